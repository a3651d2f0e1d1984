"""Before/after latency of two export folders of the same model (e.g. `--tflite-layout NCHW` against the default),
file by file (the files both folders have), batch 1, 1 and 2 threads, with the accuracy each export measured on
the full test split.

Each cell is the median p50 over --processes fresh runner processes (bench/host.py); nothing else should run.

    python benchmarks/compare_exports.py artifacts/exp13-fmnist-3ep artifacts/exp13-fmnist-3ep-nhwc
"""

from __future__ import annotations

import argparse
from pathlib import Path

FILES = ("model.fp32.onnx", "model.int8.onnx", "model.fp32.tflite", "model.int8.tflite")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()

    from edgecnn.bench.host import time_file
    from edgecnn.export.record import ExportRecord

    accuracy = {}
    for folder in (args.before, args.after):
        record = ExportRecord.read(folder)
        accuracy[folder] = {a.file: a.accuracy for a in record.artifacts if a.file}
        accuracy[folder]["pytorch"] = record.reference.accuracy
    print("| file | threads | before p50 ms | after p50 ms | speed-up | before acc | after acc |")
    print("|---|---|---|---|---|---|---|")
    for file in [f for f in FILES if (args.before / f).is_file() and (args.after / f).is_file()]:
        for threads in args.threads:
            before, after = (time_file(folder / file, threads, processes=args.processes, runs=args.runs)["p50_ms"]
                             for folder in (args.before, args.after))
            print(f"| {file} | {threads} | {before:.2f} | {after:.2f} | {before / after:.2f}× | "
                  f"{accuracy[args.before][file]:.2%} | {accuracy[args.after][file]:.2%} |", flush=True)


if __name__ == "__main__":
    main()
