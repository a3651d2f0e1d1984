"""edgecnn: build, compress, export, bundle and benchmark small CNN classifiers for edge devices.

Importing the package imports no torch; stages are imported by the commands that use them.
"""

__version__ = "0.1.0"
