"""Every runtime side by side on this machine: each file of an export (ONNX, TFLite, ncnn, ExecuTorch; fp32 and
int8) timed at batch 1 with 1 and 2 threads, interleaved, beside its test accuracy through its own runtime.

Interleaved: each round times every file once per thread count, in a fresh process each (bench/host.py), in an
order shuffled per round, so a drift of the machine spreads over all files instead of landing on one. A cell is
the median over --rounds rounds of each process's p50 (p90 likewise); peak memory is the process's peak RSS
(runtime and model loaded, after the timed runs). Nothing else should run meanwhile.

    edgecnn export --run runs/exp13-fmnist-2ep --int8 --formats onnx,tflite,ncnn,executorch
    python benchmarks/runtimes_table.py artifacts/exp13-fmnist-2ep artifacts/exp11-fmnist-2ep --rounds 3
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    from edgecnn.bench.host import run_once
    from edgecnn.export.record import ExportRecord

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", type=Path)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--forms", default="op-minimal", help="graph forms to time (export/options.py FORMS)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    forms = set(args.forms.split(","))

    # one table per model: exports of the same model merge, a later folder's file replacing an earlier one's of
    # the same name (e.g. one format exported again)
    records = {folder: ExportRecord.read(folder) for folder in args.exports}
    by_model: dict[str, dict[str, tuple[Path, object]]] = {}
    for folder, record in records.items():
        for artifact in record.files():
            if artifact.form in forms:
                by_model.setdefault(record.model, {})[artifact.file] = (folder, artifact)
    files = [entry for model in by_model.values() for entry in model.values()]
    samples: dict[tuple, list[dict]] = {}
    rng = random.Random(0)
    started = time.time()
    for round_index in range(args.rounds):
        order = [(folder, a, t) for folder, a in files for t in threads]
        rng.shuffle(order)
        for index, (folder, artifact, t) in enumerate(order, 1):
            result = run_once(folder / artifact.file, t, runs=args.runs, warmup=50)
            samples.setdefault((str(folder), artifact.file, t), []).append(result)
            print(f"\rround {round_index + 1}/{args.rounds}: {index}/{len(order)} files timed", end="", flush=True)
    print(f"\n{len(files)} files x {len(threads)} thread counts x {args.rounds} rounds in "
          f"{time.time() - started:.0f} s on {cpu_name()} ({time.strftime('%Y-%m-%d')})\n")

    table = []
    for model, entries in by_model.items():
        record = next(r for f, r in records.items() if r.model == model)
        print(f"### {record.model} on {record.dataset} ({record.images} {record.split} images)\n")
        head = "| file | runtime | accuracy | top-1 vs PyTorch |" + "".join(
            f" p50 / p90 ms, {t} thr | peak MiB, {t} thr |" for t in threads)
        print(head + "\n|" + "---|" * (4 + 2 * len(threads)))
        fastest = {}
        for folder, artifact in entries.values():
            cells, row = [], {"model": record.model, "file": artifact.file, "format": artifact.format,
                              "precision": artifact.precision, "accuracy": artifact.accuracy,
                              "agreement": artifact.agreement}
            for t in threads:
                runs = samples[(str(folder), artifact.file, t)]
                p50 = statistics.median(r["p50_ms"] for r in runs)
                p90 = statistics.median(r["p90_ms"] for r in runs)
                peak = statistics.median(r["peak_rss_mib"] for r in runs)
                row[f"p50_ms_{t}"], row[f"p90_ms_{t}"], row[f"peak_mib_{t}"] = p50, p90, peak
                cells.append(f" {p50:.3f} / {p90:.3f} | {peak:.0f} |")
                if artifact.ok and (t not in fastest or p50 < fastest[t][1]):
                    fastest[t] = (artifact.file, p50)
            runtime = runs[0]["runtime"]
            print(f"| {artifact.file} | {runtime} | {100 * artifact.accuracy:.2f} % | {100 * artifact.agreement:.2f} % |"
                  + "".join(cells))
            table.append(row)
        print()
        for t, (file, p50) in sorted(fastest.items()):
            print(f"fastest with {t} thread{'s' if t > 1 else ''}: {file} ({p50:.3f} ms)")
        print()
    if args.json_out:
        args.json_out.write_text(json.dumps({"cpu": cpu_name(), "date": time.strftime("%Y-%m-%d"), "rows": table},
                                            indent=1))


if __name__ == "__main__":
    main()
