"""The export stage: a trained run -> model files in every format and graph form, each measured through its own
runtime (pipeline.py, one module per format: onnx.py, tflite.py), the exact deploy-time rewrites it converts
(reparam.py), its record (record.py: export.json), deployment bundles (bundle.py) and the single-file runner that
runs them on a device (runner.py)."""
