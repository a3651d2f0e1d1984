"""ExecuTorch (PyTorch's edge runtime) with the XNNPACK delegate: `.pte` files, fp32 and int8.

- fp32: `torch.export.export`, then `to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])` and
  `.to_executorch()`; the whole graph goes to XNNPACK as one delegated subgraph.
- int8: PT2E with ExecuTorch's XNNPACKQuantizer (symmetric, per-channel int8 weights, int8 activations), calibrated
  on the training images, then the same lowering. The file keeps float input and output (the quantize and
  dequantize ops are inside it).
- Files are exported at batch 1; the runner feeds larger batches one image at a time.
- The runtime: ExecuTorch's Python bindings take torch tensors, so a device that runs `.pte` files through the
  runner needs torch beside the executorch package (the bundle's requirements say so per file). Lowering is slow:
  about a minute for exp13 in fp32 and several for int8 on a 2-core x86 host (docs/export.md), which is why the
  format is not in the default set.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from edgecnn.io import atomic_write_bytes

CALIBRATION_BATCH = 1  # the exported graph is static at batch 1


def _lower(program, path: str | Path) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    atomic_write_bytes(path, lowered.buffer)


def export_fp32(model: torch.nn.Module, path: str | Path, in_chans: int) -> dict:
    example = torch.zeros(1, in_chans, 32, 32)
    _lower(torch.export.export(model.eval(), (example,)), path)
    return {"delegate": "XNNPACK", "batch": 1, "layout": "NCHW", "input_dtype": "float32"}


class _HalfPrecision(torch.nn.Module):
    """The model in float16 between float32 input and output: XNNPACK runs the whole graph in fp16 and the
    runner feeds and reads float32 as for every other file."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model).eval().half()

    def forward(self, x):
        return self.model(x.half()).float()


def export_fp16(model: torch.nn.Module, path: str | Path, in_chans: int) -> dict:
    example = torch.zeros(1, in_chans, 32, 32)
    _lower(torch.export.export(_HalfPrecision(model), (example,)), path)
    return {"delegate": "XNNPACK", "batch": 1, "layout": "NCHW", "input_dtype": "float32",
            "weights": "float16", "arithmetic": "float16 (XNNPACK; emulated in fp32 where the CPU has no fp16)"}


def export_int8(model: torch.nn.Module, path: str | Path, in_chans: int, calibration: np.ndarray,
                on_batch=None) -> dict:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = torch.zeros(1, in_chans, 32, 32)
    graph = torch.export.export(copy.deepcopy(model).eval(), (example,)).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(graph, quantizer)
    images = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
    with torch.no_grad():
        for index in range(len(images)):
            prepared(images[index:index + 1])
            if on_batch and (index + 1) % 50 == 0:
                on_batch(50)
    if on_batch:
        on_batch(len(images) % 50)
    quantized = convert_pt2e(prepared)
    _lower(torch.export.export(quantized, (example,)), path)
    return {"delegate": "XNNPACK", "batch": 1, "layout": "NCHW", "input_dtype": "float32",
            "weights": "int8 per-channel symmetric", "calibration": "minmax (PT2E observers)",
            "calibration_images": len(calibration)}


def read_program(path: str | Path):
    """The program inside a .pte file (execution plans, operators, delegate blobs), by ExecuTorch's own reader."""
    from executorch.exir._serialize import _deserialize_pte_binary

    program = _deserialize_pte_binary(Path(path).read_bytes())
    return getattr(program, "program", program)


def delegate_datatypes(path: str | Path) -> set[str]:
    """The tensor datatypes of the file's XNNPACK graphs (xnn_datatype_fp32, _qint8, _qcint8, _fp16, ...): what
    the file computes in, read from the delegate's flatbuffer with the flatc and schema ExecuTorch ships."""
    import re
    import subprocess
    import tempfile

    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader

    schema = Path(xnnpack_graph_serialize.__file__).parent / "schema.fbs"  # (namespace packages have no __file__)
    flatc = schema.parents[3] / "data" / "bin" / "flatc"
    found: set[str] = set()
    for blob in read_program(path).backend_delegate_data:
        data = bytes(blob.data)
        header = XNNHeader.from_bytes(data[:XNNHeader.EXPECTED_LENGTH])
        with tempfile.TemporaryDirectory() as folder:
            graph = Path(folder) / "graph.bin"
            graph.write_bytes(data[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size])
            subprocess.run([str(flatc), "--json", "--strict-json", "--raw-binary", "-o", folder, str(schema), "--",
                            str(graph)], check=True, capture_output=True, timeout=60)
            found |= set(re.findall(r'"datatype": "(xnn_datatype_\w+)"', (Path(folder) / "graph.json").read_text()))
    return found


def precision(path: str | Path) -> str:
    """int8 when an XNNPACK graph holds quantized int8 tensors or quantize ops run outside it, fp16 when its
    tensors are half floats, fp32 otherwise."""
    kinds = delegate_datatypes(path)
    operators = {op.name for plan in read_program(path).execution_plan for op in plan.operators}
    if any("int8" in kind for kind in kinds) or any("quantize" in op for op in operators):
        return "int8"
    return "fp16" if "xnn_datatype_fp16" in kinds else "fp32"


def count_ops(path: str | Path) -> int:
    """Operators the program runs outside delegates plus one per delegate call (a fully delegated file: 1)."""
    program = read_program(path)
    return sum(len(plan.chains[0].instructions) for plan in program.execution_plan)
