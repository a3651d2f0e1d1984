"""ONNX: fp32 through torch's dynamo exporter + onnxsim, int8 through onnxruntime.quantization (static QDQ).

- dynamo exporter, opset 18, weights inside the one file (these models are small), dynamic batch dimension.
- int8 = `quant_pre_process` then `quantize_static` in QDQ format with per-channel int8 weights. Activations are
  uint8 by default ("u8s8"): on x86 onnxruntime then runs every conv as QLinearConv, where int8 activations
  ("s8s8") left some of them as float Conv between DequantizeLinear/QuantizeLinear. The scheme is a parameter.
- u8s8 quantizes weights to 7 bits (`reduce_range`): the x86 u8 x s8 kernel adds pairs of products into int16 and
  saturates with full-range weights. s8s8 needs no such trick.
- calibration: MinMax (default) or Percentile. Entropy is not offered: with onnxruntime's defaults it silently
  equals MinMax, and with enough bins to differ it clipped harder and lost accuracy.
The measurements behind each choice: docs/export.md.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from edgecnn.errors import EdgecnnError
from edgecnn.io import atomic_write_bytes

from .options import CALIBRATION_METHODS

OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "logits"
INT8_SCHEMES = {"u8s8": "QUInt8", "s8s8": "QInt8"}  # activation type; weights are always QInt8 per channel
REDUCED_RANGE = {"u8s8": True, "s8s8": False}  # 7-bit weights against int16 saturation (see above)


def export_fp32(model: torch.nn.Module, path: str | Path, in_chans: int, metadata: dict[str, str]) -> dict:
    """Export `model` to a single-file ONNX with a dynamic batch dimension; check, simplify, stamp metadata."""
    import onnx
    import onnxsim

    model = model.eval()
    sample = torch.zeros(2, in_chans, 32, 32)  # batch 2: torch.export specialises a size-1 dimension to a constant
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(model, (sample,), dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
                                output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},), verbose=False)
    proto = program.model_proto
    onnx.checker.check_model(proto)  # the exporter's graph; the full check (shape inference) runs once, on the result
    nodes_exported = len(proto.graph.node)
    simplified, ok = onnxsim.simplify(proto)
    if ok:  # onnxsim validates its own result against the input graph; keep the original when it cannot
        proto = simplified
    onnx.checker.check_model(proto, full_check=True)
    stamp_metadata(proto, metadata)
    atomic_write_bytes(path, proto.SerializeToString())
    return {"opset": OPSET, "nodes_exported": nodes_exported, "nodes": len(proto.graph.node), "simplified": ok}


def convert_fp16(fp32_path: str | Path, path: str | Path) -> dict:
    """An fp16 copy of an fp32 file by onnxconverter-common: weights and activations in float16, the input and
    output kept float32 (a Cast at each end), so callers feed and read float32 as for every other file. The
    metadata travels with the graph."""
    import onnx
    from onnxconverter_common import float16

    with warnings.catch_warnings():  # one warning per weight below fp16's smallest normal: flushed, as intended
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)
        proto = float16.convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    onnx.checker.check_model(proto, full_check=True)
    atomic_write_bytes(path, proto.SerializeToString())
    return {"opset": OPSET, "nodes": len(proto.graph.node), "converter": "onnxconverter-common float16",
            "io_dtype": "float32 (cast at each end)"}


def stamp_metadata(proto, metadata: dict[str, str]) -> None:
    """Write key/value pairs into the model's metadata_props (what onnxruntime's modelmeta.custom_metadata_map reads)."""
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)


def read_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


class _Calibration:
    """onnxruntime's CalibrationDataReader over an in-memory float32 array, in batches (the batch dim is dynamic).

    Every batch has the same size: the histogram calibrators (Percentile) stack the batches with np.asarray and
    fail on a shorter last one, so the batch size is the largest divisor of the image count up to 50."""

    def __init__(self, images: np.ndarray, on_batch=None):
        self.batch_size = max(d for d in range(1, min(50, len(images)) + 1) if len(images) % d == 0)
        self.images, self.on_batch, self.start = images, on_batch, 0

    def get_next(self):
        if self.start >= len(self.images):
            return None
        batch = self.images[self.start:self.start + self.batch_size]
        self.start += len(batch)
        if self.on_batch:
            self.on_batch(len(batch))
        return {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}

    def rewind(self) -> None:
        self.start = 0


def quantize_int8(fp32_path: str | Path, path: str | Path, calibration: np.ndarray, *, method: str = "minmax",
                  scheme: str = "u8s8", reduce_range: bool | None = None, on_batch=None) -> dict:
    """Static QDQ int8 of an fp32 ONNX file, calibrated on `calibration` (float32 NCHW, normalized).
    `reduce_range` None means the scheme's default (REDUCED_RANGE)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise EdgecnnError(f"calibration method {method!r} is not offered; use one of {', '.join(CALIBRATION_METHODS)}")
    if scheme not in INT8_SCHEMES:
        raise EdgecnnError(f"int8 scheme {scheme!r} unknown; use one of {', '.join(INT8_SCHEMES)}")
    reduce_range = REDUCED_RANGE[scheme] if reduce_range is None else reduce_range
    metadata = read_metadata(fp32_path)
    with tempfile.TemporaryDirectory(prefix="edgecnn-quant-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        quantize_static(
            str(prepared), str(quantized), _Calibration(calibration, on_batch=on_batch),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=getattr(QuantType, INT8_SCHEMES[scheme]), weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax if method == "minmax" else CalibrationMethod.Percentile,
            reduce_range=reduce_range,
            extra_options={"CalibPercentile": 99.999} if method == "percentile" else {},
        )
        import onnx

        proto = onnx.load(str(quantized))
    details = {"scheme": scheme, "calibration": method, "calibration_images": len(calibration), "format": "QDQ",
               "weights": f"int8 per-channel{', 7-bit range' if reduce_range else ''}"}
    stamp_metadata(proto, {**metadata, "quantization": json.dumps(details)})
    atomic_write_bytes(path, proto.SerializeToString())
    return {**details, "nodes": len(proto.graph.node)}
