"""Every graph form of an export, judged where it would run: host p50 at 1 and 2 threads, and executed aarch64
instructions per inference on the emulated Raspberry Pi CPUs (Cortex-A53 / A72 / A76, one thread), with the
file each device profile now picks and each pick's ratio to the naive export (the model as trained, converted
as it is).

    python benchmarks/forms_table.py artifacts/exp13-fmnist-3ep artifacts/exp11-fmnist-3ep --measure
        (--measure benches each export's bundle first: `edgecnn bench --device host --threads 1,2` and
         `--device pi3-emulated,pi4-emulated,pi5-emulated`; without it the table comes from the results store)

The exports must hold the naive form too (`edgecnn export ... --forms op-minimal,mac-preserving,layout-free,naive`).
Run it on an idle machine: host timings are timings.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

EMULATED = ("pi3-emulated", "pi4-emulated", "pi5-emulated")


def measure(folder: Path, store: str, runs: int, sample: int) -> None:
    bundle = folder / "bundle"
    base = [sys.executable, "-m", "edgecnn", "bench", "--bundle", str(bundle), "--store", store, "--no-reference"]
    for extra in (["--device", "host", "--threads", "1,2", "--runs", str(runs), "--warmup", "30"],
                  ["--device", ",".join(EMULATED), "--sample", str(sample)]):
        print("running:", " ".join(base + extra), flush=True)
        subprocess.run(base + extra, check=False)


def main() -> None:
    from edgecnn.bench.store import ResultStore
    from edgecnn.export.bundle import Manifest
    from edgecnn.export.record import ExportRecord
    from edgecnn.report.collect import recommend, real_boards

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", type=Path)
    parser.add_argument("--store", default="results/bench.sqlite")
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--sample", type=int, default=50)
    args = parser.parse_args()
    for folder in args.exports:
        if args.measure:
            measure(folder, args.store, args.runs, args.sample)
    rows = ResultStore(args.store).rows()
    for folder in args.exports:
        record, bundle = ExportRecord.read(folder), Manifest.read(folder / "bundle").bundle_id
        mine = [r for r in rows if r["bundle"] == bundle and r["status"] == "ok"]
        newest: dict[tuple, dict] = {}
        for row in mine:
            newest[(row["device"], row["file"], row["threads"])] = row
        cells = list(newest.values())
        print(f"\n{record.model} ({folder}): model {record.reference.mmacs:.2f} M MACs, "
              f"{record.reference.accuracy:.2%} PyTorch\n")
        print("| file | form | M MACs | ops | test acc % | host p50 ms, 1 / 2 thr | A53 M instr | A72 M instr |"
              " A76 M instr |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for artifact in record.files():
            def get(device, threads=1, key="instructions"):
                row = newest.get((device, artifact.file, threads))
                return None if row is None else row.get(key)

            host = [get("host", t, "p50_ms") for t in (1, 2)]
            counts = [get(d) for d in EMULATED]
            print(f"| {artifact.file} | {artifact.form} | {artifact.mmacs:.2f} | {artifact.ops} | "
                  f"{100 * artifact.accuracy:.2f} | "
                  + " / ".join("–" if v is None else f"{v:.3f}" for v in host) + " | "
                  + " | ".join("–" if v is None else f"{v / 1e6:.2f}" for v in counts) + " |")
        deployment = [{"device": r["device"], "artifact": folder.name, "file": r["file"], "form": r.get("form"),
                       "format": r["format"], "precision": r["precision"], "threads": r["threads"],
                       "judge": r.get("judge") or "timing", "target": r.get("target"), "p50_ms": r["p50_ms"],
                       "instructions": r.get("instructions"), "test_acc": (record.by_file(r["file"]) or
                                                                          record.reference).accuracy,
                       "device_acc": r["accuracy"]} for r in cells]
        print()
        for precision in ("fp32", "int8"):
            picks = recommend([d for d in deployment if d["precision"] == precision], 1.0, real_boards())
            for pick in picks:
                naive_file = _naive_file(record, pick["file"].rsplit(".", 1)[-1], precision)
                naive = next((d for d in deployment if d["device"] == (pick["by"] or pick["device"])
                              and d["file"] == naive_file
                              and d["threads"] == pick["threads"]), None)
                metric = pick["metric"]
                ratio = f", {pick['value'] / naive[metric]:.2f}x the naive {naive['file']}" if naive else ""
                value = (f"{pick['value'] / 1e6:.2f} M instructions" if metric == "instructions"
                         else f"{pick['value']:.3f} ms")
                print(f"{precision} {pick['device']}: {pick['file']} ({pick['form']}), {value}{ratio}"
                      + (f" [by {pick['by']}]" if pick["by"] else ""))


def _naive_file(record, fmt: str, precision: str) -> str | None:
    """The file of the naive form, or of the form that is the same graph (export.json's forms_alike)."""
    name = f"{fmt}-{precision}-naive"
    name = record.forms_alike.get(name, name)
    return next((a.file for a in record.artifacts if a.name == name), None)


if __name__ == "__main__":
    main()
