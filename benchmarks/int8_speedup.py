"""Is int8 faster than fp32? Export folders side by side: per format and thread count, the fp32 and int8 files'
median p50 (batch 1, fresh runner processes), the int8 speed-up, and each file's full-test accuracy from its
export.json, against the deployment-graph targets (int8 >= 1.3x faster, <= 0.5 pp accuracy drop). Ends with each
folder's fastest file on one thread and its distance from the compute floor (the model's multiply-adds at this
CPU's single-thread fp32 GEMM peak, measured here with torch).

    python benchmarks/int8_speedup.py before=artifacts/exp13-fmnist-3ep-paper-graph after=artifacts/exp13-fmnist-3ep \\
        --json-out results/int8_speedup.json

"int8 ×" divides by the fp32 file at the same thread count, as the targets are stated; "× best fp32" divides by
the fp32 file's best p50 over the thread counts measured, because at batch 1 a second thread often makes these
small graphs slower, which flatters the same-thread ratio.

Label a folder with LABEL=PATH. Nothing else should run meanwhile; --json-out is rewritten after every cell, so an
interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

PAIRS = {"onnx": ("model.fp32.onnx", "model.int8.onnx"), "tflite": ("model.fp32.tflite", "model.int8.tflite")}
SPEEDUP_TARGET, DROP_TARGET_PP = 1.3, 0.5


def gemm_peak_gmacs(size: int = 1024, repeats: int = 20) -> float:
    """Single-thread fp32 GEMM multiply-adds per second (best of `repeats`), in G."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    torch.set_num_threads(threads)
    return size ** 3 / best / 1e9


def model_macs(record) -> float:
    """Multiply-adds of the convolutions and linear layers of the model as trained, in M."""
    from edgecnn.compress.zoo.measure import count_mmacs
    from edgecnn.compress.rebuild import build_from_checkpoint
    from edgecnn.runs import load_checkpoint

    payload = load_checkpoint(record.checkpoint)
    return count_mmacs(build_from_checkpoint(payload, source=record.checkpoint), payload["in_chans"])


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from edgecnn.bench.host import time_file
    from edgecnn.export.record import ExportRecord
    from edgecnn.io import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="export folders, optionally LABEL=PATH")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    table = Table(title=f"int8 against fp32, batch 1, median p50 ms of {args.processes} fresh processes "
                        f"(targets: ≥{SPEEDUP_TARGET}× and ≤{DROP_TARGET_PP} pp)")
    for column in ("export", "format", "threads", "fp32 ms", "int8 ms", "int8 ×", "× best fp32", "fp32 acc", "int8 acc",
                   "drop pp", "met"):
        table.add_column(column, justify="left" if column in ("export", "format", "met") else "right")
    results: dict = {"cells": [], "best": []}
    peak = gemm_peak_gmacs()
    results["gemm_peak_gmacs_1thread"] = round(peak, 1)
    for entry in args.folders:
        label, _, path = entry.rpartition("=")
        folder = Path(path)
        label = label or folder.name
        record = ExportRecord.read(folder)
        accuracy = {a.file: a.accuracy for a in record.files()}
        single_thread = {}
        for format_name, (fp32, int8) in PAIRS.items():
            if fp32 not in accuracy or int8 not in accuracy:
                continue
            p50 = {threads: {f: time_file(folder / f, threads, processes=args.processes, runs=args.runs)["p50_ms"]
                             for f in (fp32, int8)} for threads in args.threads}
            best_fp32 = min(cell[fp32] for cell in p50.values())
            for threads, cell in p50.items():
                if threads == 1:
                    single_thread.update(cell)
                speedup, drop = cell[fp32] / cell[int8], 100 * (accuracy[fp32] - accuracy[int8])
                met = speedup >= SPEEDUP_TARGET and drop <= DROP_TARGET_PP
                results["cells"].append({"export": label, "folder": str(folder), "format": format_name,
                                         "threads": threads, "fp32_ms": cell[fp32], "int8_ms": cell[int8],
                                         "speedup": round(speedup, 3), "speedup_vs_best_fp32":
                                         round(best_fp32 / cell[int8], 3), "fp32_accuracy": accuracy[fp32],
                                         "int8_accuracy": accuracy[int8], "drop_pp": round(drop, 2), "met": met,
                                         "rewrites": record.rewrites})
                table.add_row(label, format_name, str(threads), f"{cell[fp32]:.3f}", f"{cell[int8]:.3f}",
                              f"{speedup:.2f}", f"{best_fp32 / cell[int8]:.2f}", f"{accuracy[fp32]:.2%}",
                              f"{accuracy[int8]:.2%}", f"{drop:+.2f}", "yes" if met else "no")
            if args.json_out:
                atomic_write_text(args.json_out, json.dumps(results, indent=2) + "\n")
        if single_thread:
            best = min(single_thread, key=single_thread.get)
            macs = model_macs(record)
            floor_ms = macs / peak  # M MACs / (G MAC/s) = ms
            results["best"].append({"export": label, "file": best, "p50_ms": single_thread[best], "mmacs": macs,
                                    "floor_ms": round(floor_ms, 4), "ratio": round(single_thread[best] / floor_ms, 2)})
    Console(width=200).print(table)
    for row in results["best"]:
        print(f"{row['export']}: fastest on 1 thread {row['file']} {row['p50_ms']:.3f} ms; compute floor "
              f"{row['mmacs']:.1f} M MACs / {peak:.1f} GMAC/s = {row['floor_ms']:.3f} ms -> {row['ratio']:.1f}x the floor")
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
