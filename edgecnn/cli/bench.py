"""`edgecnn bench`: latency, peak memory and on-device accuracy of a bundle's files, on the host and over SSH."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgecnn.bench.options import BenchPlan

from .console import err, out
from .options import DataDirOpt, JsonOpt, LayoutOpt, MeanOpt, StdOpt, int_list
from .progress import bench_progress


PLAN = BenchPlan()


def bench(
    target: Annotated[list[str] | None, typer.Argument(help="Model files made elsewhere (.onnx, .tflite, .pte), or one bundle folder or .tar.gz.", show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="Device profile(s), comma-separated; SSH devices run at once, the host and emulated boards one after another.")] = "host",
    bundle: Annotated[str | None, typer.Option("--bundle", help="A bundle folder or .tar.gz (default: the newest bundle).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Use the newest export of this model.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset of that export.")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Timed inferences per measurement.")] = PLAN.runs,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed inferences first.")] = PLAN.warmup,
    threads: Annotated[str | None, typer.Option(help="Comma list of thread counts (default: each profile's).")] = None,
    formats: Annotated[str | None, typer.Option(help="Comma list: onnx, tflite, ncnn, executorch (default: all files).")] = None,
    precision: Annotated[str | None, typer.Option(help="Comma list: fp32, fp16, int8 (default: every precision the bundle holds).")] = None,
    sample: Annotated[int | None, typer.Option(min=1, help="Score only the first N sample images.")] = None,
    checkpoint: Annotated[str | None, typer.Option(help="PyTorch reference checkpoint (default: the export's).")] = None,
    reference: Annotated[bool, typer.Option("--reference/--no-reference", help="Time PyTorch eager fp32 on the host.")] = True,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds allowed to each command on a device.")] = PLAN.timeout,
    count_instructions: Annotated[bool, typer.Option("--count-instructions", help="Also count executed aarch64 instructions per inference (devices with a counter: the emulated boards, which always count).")] = False,
    count_runs: Annotated[int, typer.Option("--count-runs", min=1, help="Inferences between the counter's markers.")] = PLAN.count_runs,
    profile: Annotated[bool, typer.Option("--profile", help="With counting: where the instructions go, by the runtime's function names.")] = False,
    store_path: Annotated[str | None, typer.Option("--store", help="SQLite results file (default results/bench.sqlite).")] = None,
    exports_root: Annotated[str, typer.Option("--exports-root", help="Where exports are searched.")] = "artifacts",
    data_dir: DataDirOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    layout: LayoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a bundle on devices: latency percentiles, peak memory and sample accuracy per file and thread count.

    Model files made elsewhere are bundled first (artifacts/file-<name>-<hash>/bundle): with --dataset, each
    file's accuracy on its whole test split through its runtime, and the bench's on the bundle's sample.

    Every measurement goes to the results store as soon as it is made; a device that fails or drops off keeps
    what it finished, is reported in one line, and makes the exit status 1.
    """
    from edgecnn.bench.harness import is_host, locate_bundle, reference_checkpoint, run_bench
    from edgecnn.export.bundle import Manifest
    from edgecnn.export.options import parse_formats
    from edgecnn.bench.store import ResultStore
    from edgecnn.devices.profiles import get_profile
    from edgecnn.errors import EdgecnnError, one_line

    profiles = [get_profile(name.strip()) for name in device.split(",") if name.strip()]
    if not profiles:
        raise EdgecnnError("--device names no device")
    if precision and set(precision.split(",")) - {"fp32", "fp16", "int8"}:
        raise EdgecnnError(f"unknown precision in {precision!r}; known: fp32, fp16, int8")
    thread_counts, chosen_formats = int_list(threads) if threads else None, parse_formats(formats) if formats else None
    if target and len(target) == 1 and (Path(target[0]).is_dir() or target[0].endswith((".tar.gz", ".tgz"))):
        bundle, target = target[0], None  # `edgecnn bench BUNDLE` as --bundle BUNDLE
    if target:
        if bundle or model:
            raise EdgecnnError("name model files, or --bundle / --model, not both")
        from edgecnn.export.bundle import bundle_is_current, make_bundle

        from .bundle import foreign_export

        export_folder = foreign_export(target, exports_root, dataset, data_dir, mean, std, layout)
        if not bundle_is_current(export_folder, export_folder / "bundle"):
            make_bundle(export_folder, export_folder / "bundle", data_dir=data_dir)
        bundle, reference = str(export_folder / "bundle"), False  # no PyTorch model to compare with
        err.print(f"bundled {len(target)} file(s) in {bundle}", highlight=False, markup=False)
    elif mean or std or layout:
        raise EdgecnnError("--mean, --std and --layout describe model files made elsewhere; name the files")
    folder, export_dir = locate_bundle(bundle, model, dataset, exports_root, data_dir,
                                       note=lambda text: err.print(text, highlight=False, markup=False),
                                       device=profiles[0].name if len(profiles) == 1 else None)
    manifest = Manifest.read(folder)  # every sha256, once, before anything runs
    plan = BenchPlan(runs=runs, warmup=warmup, threads=thread_counts, formats=chosen_formats,
                     precisions=tuple(precision.split(",")) if precision else None, sample=sample, timeout=timeout,
                     checkpoint=reference_checkpoint(checkpoint, export_dir) if reference else None,
                     count_instructions=count_instructions, count_runs=count_runs, profile=profile)
    if reference and plan.checkpoint is None and any(is_host(p) for p in profiles):
        err.print("no PyTorch reference row: the checkpoint of this bundle was not found (pass --checkpoint)",
                  highlight=False)
    store = ResultStore(store_path)
    with bench_progress(profiles, manifest, plan) as tick:
        session, outcomes = run_bench(profiles, folder, manifest, plan, store, tick)
    rows = [r for o in outcomes for r in o.rows]
    errors = [e for o in outcomes for e in o.errors]
    if as_json:
        print(json.dumps({"session": session, "store": str(store.path), "bundle": str(folder),
                          "rows": [{k: v for k, v in r.items() if k != "predictions"} for r in rows],
                          "errors": errors}, indent=2))
    else:
        if rows:  # a device that failed before measuring anything has only its error line below
            out.print(_table(rows, session))
        for row in rows:
            for name, instructions, share in row.get("profile") or []:
                out.print(f"{row['device']} {row['file']}: {share:6.1%} {instructions / 1e6:7.2f} M  {name}",
                          highlight=False, markup=False)
        out.print(f"{len(rows)} measurements in {store.path} (session {session})", highlight=False, markup=False)
    if store.deferred:  # nothing is lost: the rows wait in the side file and are merged at the next write
        print(f"edgecnn: warning: {one_line(store.deferred)}", file=sys.stderr)
    for error in errors:  # plain print: one line each, never wrapped by rich
        print(f"edgecnn: error: {one_line(error)}", file=sys.stderr)
    if errors:
        raise typer.Exit(1)


def _table(rows: list[dict], session: str) -> Table:
    table = Table(title=f"bench {session}: batch 1, latency in ms (emulated boards: executed aarch64 instructions per "
                        "inference, one thread), accuracy on the bundle's sample")
    for column in ("device", "arch", "file", "runtime", "thr", "p50", "p90", "p99", "mean±std", "load", "peak MiB",
                   "M instr", "accuracy", "top-5", "= host"):
        table.add_column(column, justify="right" if column not in ("device", "arch", "file", "runtime") else "left")

    def ms(row, key):
        return "-" if row.get(key) is None else f"{row[key]:.3f}"

    for r in rows:
        if r.get("status") == "failed":
            table.add_row(r["device"], r["arch"] or "?", r["file"], "-", str(r["threads"] or "-"),
                          f"failed: {r['error']}", *[""] * 9)
            continue
        agreement = r.get("host_agreement")
        table.add_row(r["device"], r["arch"] or "?", r["file"], str(r["runtime"]), str(r["threads"]),
                      ms(r, "p50_ms") if r.get("p50_ms") is not None else
                      f"{r['emulated_ms']:.0f} (emulated)" if r.get("emulated_ms") else "-",
                      ms(r, "p90_ms"), ms(r, "p99_ms"),
                      "-" if r.get("mean_ms") is None else f"{r['mean_ms']:.3f}±{r['std_ms']:.3f}",
                      "-" if r.get("load_ms") is None else f"{r['load_ms']:.0f}",
                      "-" if r.get("peak_rss_mib") is None else f"{r['peak_rss_mib']:.0f}",
                      "-" if r.get("instructions") is None else f"{r['instructions'] / 1e6:.2f}",
                      "-" if r.get("accuracy") is None else f"{r['accuracy']:.2%} /{r['sample_images']}",
                      "-" if r.get("top5") is None else f"{r['top5']:.2%}",
                      "-" if agreement is None else f"{agreement:.1%}")
    return table
