"""Which convolutions does int8 make faster on this host? Chains of one layer kind at exp13's shapes, exported by
edgecnn's own exporters (TFLite through litert-torch, ONNX through onnxruntime.quantization, the settings
`edgecnn export --int8` uses), timed fp32 vs int8 at batch 1 in fresh runner processes.

    python benchmarks/int8_op_speedup.py [--threads 1 2] [--json-out results/int8_op_speedup.json]

Why: exp13's int8 files are only 1.0-1.15x faster than fp32 here (README, "Deployment graphs"). A model-level
number cannot say whether that is the runtime's per-op cost or its kernels; this separates the two layer kinds
the exported graphs are made of (pointwise 1x1 convs and depthwise 3x3 convs, each with its ReLU6 fused) and
prints, under the table, how exp13's exported int8 graph splits its multiply-adds between them.

Each chain starts with an average pool that brings the 32x32 input down to the layer's map size (the exporters
take 32x32 images); its cost is in every row, fp32 and int8 alike, so per-layer times are slight overestimates.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

LAYERS = 20


def chain(kind: str, channels: int, size: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.AvgPool2d(32 // size)] if size < 32 else []
    for index in range(LAYERS):
        if kind == "depthwise":
            layers.append(nn.Conv2d(channels, channels, 3, padding=1, groups=channels))
        else:  # pointwise, alternating expand and project as in a ghost bottleneck (40 <-> 256 in exp13)
            wide = 256
            layers.append(nn.Conv2d(channels, wide, 1) if index % 2 == 0 else nn.Conv2d(wide, channels, 1))
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers).eval()


CASES = {  # name -> (kind, input channels, map size); the shapes exp13's int8 graph spends most time in
    "pointwise 40<->256 @8x8": ("pointwise", 40, 8),
    "depthwise 3x3 256 ch @8x8": ("depthwise", 256, 8),
    "depthwise 3x3 40 ch @8x8": ("depthwise", 40, 8),
    "depthwise 3x3 64 ch @32x32": ("depthwise", 64, 32),
}


def layer_macs(model: nn.Sequential) -> int:
    macs, x = 0, torch.zeros(1, model_in_channels(model), 32, 32)
    with torch.no_grad():
        for module in model:
            x = module(x)
            if isinstance(module, nn.Conv2d):
                macs += x.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
    return macs


def model_in_channels(model: nn.Sequential) -> int:
    return next(m for m in model if isinstance(m, nn.Conv2d)).in_channels


def export_case(model: nn.Sequential, folder: Path) -> dict[str, Path]:
    from edgecnn.export import onnx as onnx_format
    from edgecnn.export import tflite as tflite_format

    channels = model_in_channels(model)
    calibration = np.random.default_rng(0).standard_normal((64, channels, 32, 32)).astype(np.float32)
    files = {"onnx": (folder / "m.fp32.onnx", folder / "m.int8.onnx"),
             "tflite": (folder / "m.fp32.tflite", folder / "m.int8.tflite")}
    onnx_format.export_fp32(model, files["onnx"][0], channels, {"model": "chain"})
    onnx_format.quantize_int8(files["onnx"][0], files["onnx"][1], calibration)
    tflite_format.export_fp32(model, files["tflite"][0], channels)
    tflite_format.export_int8(model, files["tflite"][1], channels, calibration)
    return files


def exp13_int8_mac_split() -> dict[str, float]:
    """Multiply-adds (M) of exp13's default int8 export graph, by conv kind."""
    from edgecnn.compress.zoo import get_model
    from edgecnn.export.pipeline import ExportOptions
    from edgecnn.export.reparam import reparameterize

    graph = reparameterize(get_model("exp13", 10, 1), torch.zeros(1, 1, 32, 32), ExportOptions().ghost_int8)[0]
    split = {"depthwise": 0, "pointwise/dense": 0}

    def count(module, _, out):
        kind = "depthwise" if module.groups == module.in_channels > 1 else "pointwise/dense"
        split[kind] += out.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]

    hooks = [m.register_forward_hook(count) for m in graph.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        graph(torch.zeros(1, 1, 32, 32))
    for hook in hooks:
        hook.remove()
    return {k: v / 1e6 for k, v in split.items()}


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from edgecnn.bench.host import time_file
    from edgecnn.io import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    console = Console()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-int8-ops-") as tmp:
        for name, (kind, channels, size) in CASES.items():
            model = chain(kind, channels, size)
            macs = layer_macs(model) / LAYERS
            folder = Path(tmp) / name.replace(" ", "_").replace("@", "").replace("<->", "-")
            folder.mkdir()
            console.print(f"exporting {name}")
            files = export_case(model, folder)
            for format_name, (fp32, int8) in files.items():
                for threads in args.threads:
                    fp32_ms, int8_ms = (time_file(f, threads, processes=args.processes, runs=args.runs)["p50_ms"]
                                        for f in (fp32, int8))
                    rows.append({"layer": name, "format": format_name, "threads": threads, "kmacs_per_layer":
                                 round(macs / 1e3, 1), "fp32_us_per_layer": round(1e3 * fp32_ms / LAYERS, 2),
                                 "int8_us_per_layer": round(1e3 * int8_ms / LAYERS, 2),
                                 "int8_speedup": round(fp32_ms / int8_ms, 2)})
                    if args.json_out:  # rewritten after every cell: an interrupted run keeps what it measured
                        atomic_write_text(args.json_out, json.dumps({"rows": rows}, indent=2) + "\n")
    table = Table(title=f"int8 vs fp32 per layer (chains of {LAYERS}, batch 1, median p50 of {args.processes} "
                        "fresh processes)")
    for column in ("layer", "format", "threads", "k MACs / layer", "fp32 µs / layer", "int8 µs / layer", "int8 ×"):
        table.add_column(column, justify="left" if column in ("layer", "format") else "right")
    for row in rows:
        table.add_row(row["layer"], row["format"], str(row["threads"]), f"{row['kmacs_per_layer']:.0f}",
                      f"{row['fp32_us_per_layer']:.2f}", f"{row['int8_us_per_layer']:.2f}", f"{row['int8_speedup']:.2f}")
    console.print(table)
    split = exp13_int8_mac_split()
    console.print("exp13's int8 export graph: " + ", ".join(f"{k} {v:.1f} M MACs" for k, v in split.items()))
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps({"rows": rows, "exp13_int8_macs_m": split}, indent=2) + "\n")


if __name__ == "__main__":
    main()
