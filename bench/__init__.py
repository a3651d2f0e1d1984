"""Stage 4 of edgecnn: latency and memory benchmarks on the host and on devices reached over SSH.

This stage has no code yet; see the README's status section. `edgecnn bench` appears when it works.
"""
