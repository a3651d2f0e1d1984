"""Stage 2 of edgecnn: ONNX and TFLite export, int8 calibration and accuracy of the exported files.

This stage has no code yet; see the README's status section. `edgecnn export` appears when it works.
"""
