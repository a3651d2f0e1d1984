"""Host latency of exported files: fp32 against int8, ONNX (onnxruntime) and TFLite (ai-edge-litert), batch 1,
1 and 2 threads.

For each model the files come from `edgecnn export --int8` of a trained run when one exists under --exports
(artifacts/<run>/export.json with model and int8 rows), and otherwise are exported here from the zoo model with
BatchNorm statistics settled on Fashion-MNIST images and int8 calibrated on Fashion-MNIST training images: latency
does not depend on what the weights learned, only on the graph. The table says which source each row used.

Each cell is the median p50 over --processes fresh processes (bench/host.py); nothing else should run meanwhile.

    python benchmarks/export_latency.py                               # exp13 exp11 exp6 resnet101-exp1
    python benchmarks/export_latency.py --models exp13 --processes 5 --json-out latency.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

FILES = ("model.fp32.onnx", "model.int8.onnx", "model.fp32.tflite", "model.int8.tflite")


def export_settled(model_name: str, out: Path, calib_samples: int) -> Path:
    """fp32 + int8 ONNX and TFLite of an untrained zoo model whose BatchNorm statistics come from real images."""
    from edgecnn.compress.zoo import get_model, settle_batchnorm
    from edgecnn.data import load_dataset
    from edgecnn.export import onnx as onnx_format
    from edgecnn.export import tflite as tflite_format
    from edgecnn.export.pipeline import ExportOptions, calibration_images
    from edgecnn.export.reparam import reparameterize

    out = out.with_name(out.name + "-rewritten")  # not the files of the graph as trained, cached by older versions
    if all((out / f).is_file() for f in FILES):
        return out
    data = load_dataset("fashion-mnist")
    calib = calibration_images(data, calib_samples)
    torch.manual_seed(0)
    model = settle_batchnorm(get_model(model_name, 10, 1),
                             [torch.from_numpy(calib[i:i + 64]) for i in range(0, min(len(calib), 256), 64)])
    out.mkdir(parents=True, exist_ok=True)
    options = ExportOptions()  # the graphs `edgecnn export` converts by default (export/reparam.py)
    example = torch.zeros(1, 1, 32, 32)
    fp32_graph = reparameterize(model, example, options.ghost_fp32)[0]
    int8_graph = reparameterize(model, example, options.ghost_int8)[0]
    onnx_format.export_fp32(fp32_graph, out / "model.fp32.onnx", 1, {"model": model_name})
    onnx_format.export_fp32(int8_graph, out / "int8-source.onnx", 1, {"model": model_name})
    onnx_format.quantize_int8(out / "int8-source.onnx", out / "model.int8.onnx", calib)
    (out / "int8-source.onnx").unlink()
    tflite_format.export_fp32(fp32_graph, out / "model.fp32.tflite", 1)
    tflite_format.export_int8(int8_graph, out / "model.int8.tflite", 1, calib)
    return out


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from edgecnn.bench.host import time_file
    from edgecnn.compress.zoo import resolve
    from edgecnn.errors import EdgecnnError
    from edgecnn.export.pipeline import find_export
    from edgecnn.io import atomic_write_text, cache_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["exp13", "exp11", "exp6", "resnet101-exp1"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--exports", default="artifacts", help="where `edgecnn export` wrote trained runs' files")
    parser.add_argument("--calib-samples", type=int, default=200)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    rows = []
    table = Table(title="host latency, batch 1: median p50 ms over fresh processes (int8 speed-up = fp32 / int8)")
    for column in ("model", "weights", "threads", "onnx fp32", "onnx int8", "onnx ×", "tflite fp32", "tflite int8",
                   "tflite ×"):
        table.add_column(column, justify="left" if column in ("model", "weights") else "right")
    for name in args.models:
        model = resolve(name)
        try:
            folder = find_export(model, root=args.exports, files=FILES)
        except EdgecnnError:
            folder = None
        source = "trained" if folder else "settled (untrained)"
        folder = folder or export_settled(model, cache_dir() / "bench-exports" / model, args.calib_samples)
        # big files are slow files: resnet101-exp1 (160 MB, 2.5 GFLOPs) gets fewer timed runs than the small ones
        runs = 30 if (folder / FILES[0]).stat().st_size > 20e6 else 200
        for threads in args.threads:
            cells = {}
            for file in FILES:
                started = time.perf_counter()
                cells[file] = time_file(folder / file, threads, processes=args.processes, runs=runs, warmup=10)
                cells[file]["wall_s"] = round(time.perf_counter() - started, 1)
            p = {f: cells[f]["p50_ms"] for f in FILES}
            rows.append({"model": model, "weights": source, "threads": threads, "files": cells})
            table.add_row(model, source, str(threads), f"{p[FILES[0]]:.3f}", f"{p[FILES[1]]:.3f}",
                          f"{p[FILES[0]] / p[FILES[1]]:.2f}", f"{p[FILES[2]]:.3f}", f"{p[FILES[3]]:.3f}",
                          f"{p[FILES[2]] / p[FILES[3]]:.2f}")
            if args.json_out:  # partial results survive an interrupted run
                atomic_write_text(args.json_out, json.dumps(rows, indent=2) + "\n")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
