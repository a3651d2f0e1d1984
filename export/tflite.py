"""TFLite through litert-torch: fp32 by `litert_torch.convert`, full int8 by the PT2E quantizer.

The int8 path:
- `torch.export.export(..., strict=True)`: non-strict export drops the `source_fn_stack` metadata that
  litert-torch's add/mul/cat annotators need, which leaves residual adds in float between (DE)QUANTIZE ops.
- symmetric per-channel int8 weights, int8 activations; the file has int8 input and int8 output, which the
  runner (de)quantizes with the tensors' own scale and zero point.
- calibration runs batches of 100 through a module exported with a dynamic batch dimension (the file itself is
  converted at batch 1), much faster than image by image.

Files are exported at batch 1 (the deployment case); the runner feeds larger batches one image at a time.

Input layout: channel-last (NHWC, the default) or NCHW. TFLite kernels are NHWC, so a file with an NCHW input
starts with a layout op (a TRANSPOSE for 3 channels, a RESHAPE for 1); exporting `model(x.permute(0, 3, 1, 2))`
lets the converter cancel the permute against its own layout change, and the file starts with its first conv.
The file's input shape then says the layout ([1, 32, 32, C]); the runner reads it from there, export.json and
the bundle manifest record it per file, and callers keep handing the runner NCHW batches.

fp16 files: the fp32 file with every conv and fully-connected weight stored as float16, by ai-edge-quantizer's
float-casting weight-only recipe (litert-converter has no float16 option). Each such weight is followed by a
DEQUANTIZE op; XNNPACK folds them when it builds its graph, and computes in fp16 where the CPU has fp16 arithmetic
and the interpreter asks for it, in fp32 otherwise. Measurements: docs/export.md.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgecnn.errors import EdgecnnError
from edgecnn.io import atomic_write_bytes

from .options import TFLITE_LAYOUTS as LAYOUTS

CALIBRATION_BATCH = 100


class ChannelsLastInput(torch.nn.Module):
    """`model` taking an NHWC batch: the permute cancels against the converter's own NCHW -> NHWC change."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.permute(0, 3, 1, 2))


def check_layout(value: str, label: str = "the TFLite input layout") -> None:
    if value not in LAYOUTS:
        raise EdgecnnError(f"{label} must be {' or '.join(LAYOUTS)}, not {value!r}")


def _for_layout(model: torch.nn.Module, layout: str) -> torch.nn.Module:
    check_layout(layout)
    return ChannelsLastInput(model).eval() if layout == "NHWC" else model.eval()


def _example(in_chans: int, layout: str, batch: int = 1) -> torch.Tensor:
    return torch.zeros(batch, 32, 32, in_chans) if layout == "NHWC" else torch.zeros(batch, in_chans, 32, 32)


def _quiet() -> None:
    """Imports litert-torch without the log lines nobody can act on: its TensorFlow core logs at load (absl's
    pre-init notice, oneDNN's round-off notice: C++, fd 2, so only an fd-level redirect around the import stops
    them) and on every conversion (TF_CPP_MIN_LOG_LEVEL), torch's pytree deprecation notice for a torchao enum, and
    litert-torch's own task tree on stdout (its rich console). Errors still raise."""
    import logging

    from .runner import silenced_stderr

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    with silenced_stderr():
        import litert_torch
        import litert_torch.progress

    litert_torch.progress.console.quiet = True


def _write(edge_model, path: str | Path) -> None:
    with tempfile.TemporaryDirectory(prefix="edgecnn-tflite-") as tmp:
        staged = Path(tmp) / "model.tflite"
        edge_model.export(str(staged))
        atomic_write_bytes(path, staged.read_bytes())


def export_fp32(model: torch.nn.Module, path: str | Path, in_chans: int, layout: str = "NHWC") -> dict:
    _quiet()
    import litert_torch

    edge = litert_torch.convert(_for_layout(model, layout), (_example(in_chans, layout),))
    _write(edge, path)
    return {"batch": 1, "layout": layout, "input_dtype": "float32"}


def export_int8(model: torch.nn.Module, path: str | Path, in_chans: int, calibration: np.ndarray,
                on_batch=None, layout: str = "NHWC") -> dict:
    """Full int8 file of `model`, calibrated on `calibration` (float32 NCHW, normalized, as the runner feeds)."""
    _quiet()
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = _for_layout(copy.deepcopy(model), layout)
    batch = torch.export.Dim("batch", min=1, max=4096)
    graph = torch.export.export(model, (_example(in_chans, layout, 2),), dynamic_shapes=({0: batch},),
                                strict=True).module()
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(graph, quantizer)
    calibration = calibration.transpose(0, 2, 3, 1) if layout == "NHWC" else calibration
    images = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
    with torch.no_grad():
        for start in range(0, len(images), CALIBRATION_BATCH):
            prepared(images[start:start + CALIBRATION_BATCH])
            if on_batch:
                on_batch(len(images[start:start + CALIBRATION_BATCH]))
    quantized = convert_pt2e(prepared, fold_quantize=False)
    for module in quantized.modules():  # captured from an eval-mode model, but a GraphModule says "training"
        module.training = False  # (litert-torch would warn); exported modules refuse .eval() itself
    edge = litert_torch.convert(quantized, (_example(in_chans, layout),),
                                quant_config=QuantConfig(pt2e_quantizer=quantizer))
    _write(edge, path)
    return {"batch": 1, "layout": layout, "input_dtype": "int8", "weights": "int8 per-channel symmetric",
            "calibration": "minmax (PT2E observers)", "calibration_images": len(calibration)}


def convert_fp16(fp32_path: str | Path, path: str | Path, layout: str = "NHWC") -> dict:
    """The fp32 file with its conv/fully-connected weights stored as float16 (ai-edge-quantizer float casting)."""
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    # it prints a size summary on stdout and tqdm bars on stderr of its own; edgecnn shows its own progress
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        session = quantizer.Quantizer(str(fp32_path))
        session.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                       num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING)
        converted = session.quantize().quantized_model
    if converted is None:
        raise EdgecnnError("ai-edge-quantizer returned no model")
    atomic_write_bytes(path, bytes(converted))
    return {"batch": 1, "layout": layout, "input_dtype": "float32", "weights": "float16 (ai-edge-quantizer float casting)"}


def count_ops(path: str | Path) -> dict[str, int]:
    """Operator histogram of a .tflite file (for graph checks and reports)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    counts: dict[str, int] = {}
    for op in interpreter._get_ops_details():  # noqa: SLF001 - the only op listing the runtime offers
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts
