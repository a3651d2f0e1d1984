"""Which convolutions does int8 make faster on this host? Chains of one layer kind at exp13's shapes, exported by
edgecnn's own exporters (TFLite through litert-torch, ONNX through onnxruntime.quantization, the settings
`edgecnn export --int8` uses), timed fp32 vs int8 at batch 1 in fresh runner processes.

    python benchmarks/int8_op_speedup.py [--threads 1 2] [--json-out results/int8_op_speedup.json]

Why: exp13's int8 files are only 1.0-1.15x faster than fp32 here (README, "Deployment graphs"). A model-level
number cannot say whether that is the runtime's per-op cost or its kernels; this separates the two layer kinds
the exported graphs are made of (pointwise 1x1 convs and depthwise 3x3 convs, each with its ReLU6 fused) and
prints, under the table, how exp13's exported int8 graph splits its multiply-adds between them.

Each chain starts with a stem conv from a 1-channel 32x32 image (what the exporters take) to the layer's width and
map size; the same stem is exported and timed alone, and a layer's time is (chain - stem) / LAYERS, so the
runner's input handling and the stem cancel out.
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


def chain(kind: str, channels: int, size: int, layers_count: int = LAYERS) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(1, channels, 32 // size, stride=32 // size), nn.ReLU6()]
    for index in range(layers_count):
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
    """Multiply-adds of the chain's layers after the stem, per layer."""
    macs, x = 0, torch.zeros(1, 1, 32, 32)
    with torch.no_grad():
        for index, module in enumerate(model):
            x = module(x)
            if isinstance(module, nn.Conv2d) and index > 0:
                macs += x.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
    return macs // LAYERS


def export_case(model: nn.Sequential, folder: Path) -> dict[tuple[str, str], Path]:
    """(format, precision) -> file, through edgecnn's exporters."""
    from edgecnn.export import onnx as onnx_format
    from edgecnn.export import tflite as tflite_format

    folder.mkdir(parents=True)
    calibration = np.random.default_rng(0).standard_normal((64, 1, 32, 32)).astype(np.float32)
    files = {(f, p): folder / f"m.{p}.{f}" for f in ("onnx", "tflite") for p in ("fp32", "int8")}
    onnx_format.export_fp32(model, files["onnx", "fp32"], 1, {"model": "chain"})
    onnx_format.quantize_int8(files["onnx", "fp32"], files["onnx", "int8"], calibration)
    tflite_format.export_fp32(model, files["tflite", "fp32"], 1)
    tflite_format.export_int8(model, files["tflite", "int8"], 1, calibration)
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
        for number, (name, (kind, channels, size)) in enumerate(CASES.items()):
            console.print(f"exporting {name}")
            full, stem = (export_case(chain(kind, channels, size, count), Path(tmp) / f"{number}-{count}")
                          for count in (LAYERS, 0))
            macs = layer_macs(chain(kind, channels, size))
            for format_name in ("onnx", "tflite"):
                for threads in args.threads:
                    per_layer = {}
                    for precision in ("fp32", "int8"):
                        full_ms, stem_ms = (time_file(files[format_name, precision], threads, processes=args.processes,
                                                      runs=args.runs)["p50_ms"] for files in (full, stem))
                        per_layer[precision] = 1e3 * (full_ms - stem_ms) / LAYERS
                    rows.append({"layer": name, "format": format_name, "threads": threads,
                                 "kmacs_per_layer": round(macs / 1e3, 1),
                                 "fp32_us_per_layer": round(per_layer["fp32"], 2),
                                 "int8_us_per_layer": round(per_layer["int8"], 2),
                                 "int8_speedup": round(per_layer["fp32"] / per_layer["int8"], 2)})
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
