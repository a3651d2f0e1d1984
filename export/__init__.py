"""The export stage: a trained run -> model files in every format and graph form, each measured through its own
runtime (pipeline.py, one module per format: onnx.py, tflite.py, ncnn_format.py, executorch_format.py; the last two
are not named after their runtimes because runner.py runs as a script from this folder, where such a module would
be imported instead of the runtime), the exact deploy-time rewrites it converts (reparam.py), its record
(record.py: export.json), deployment bundles (bundle.py) and the single-file runner that runs them on a device
(runner.py)."""
