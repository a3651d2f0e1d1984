"""`edgecnn bench`: latency, peak memory and on-device accuracy of a bundle's files, on the host and over SSH."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .console import err, out
from .options import DataDirOpt, JsonOpt


def bench(
    device: Annotated[str, typer.Option("--device", help="Device profile(s), comma-separated; they run at once.")] = "host",
    bundle: Annotated[str | None, typer.Option("--bundle", help="A bundle folder or .tar.gz.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Use the newest export of this model.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset of that export.")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Timed inferences per measurement.")] = 100,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed inferences first.")] = 10,
    threads: Annotated[str | None, typer.Option(help="Comma list of thread counts (default: each profile's).")] = None,
    formats: Annotated[str | None, typer.Option(help="Comma list: onnx, tflite (default: all files).")] = None,
    precision: Annotated[str | None, typer.Option(help="Comma list: fp32, int8 (default: both).")] = None,
    sample: Annotated[int | None, typer.Option(min=1, help="Score only the first N sample images.")] = None,
    checkpoint: Annotated[str | None, typer.Option(help="PyTorch reference checkpoint (default: the export's).")] = None,
    reference: Annotated[bool, typer.Option("--reference/--no-reference", help="Time PyTorch eager fp32 on the host.")] = True,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds allowed to each command on a device.")] = 600,
    store_path: Annotated[str | None, typer.Option("--store", help="SQLite results file (default results/bench.sqlite).")] = None,
    exports_root: Annotated[str, typer.Option("--exports-root", help="Where exports are searched.")] = "artifacts",
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a bundle on devices: latency percentiles, peak memory and sample accuracy per file and thread count.

    Every measurement goes to the results store as soon as it is made; a device that fails or drops off keeps
    what it finished, is reported in one line, and makes the exit status 1.
    """
    from edgecnn.bench.harness import BenchPlan, is_host, load_bundle, run_bench
    from edgecnn.export.pipeline import parse_formats
    from edgecnn.bench.store import ResultStore
    from edgecnn.devices.profiles import get_profile
    from edgecnn.errors import EdgecnnError

    profiles = [get_profile(name.strip()) for name in device.split(",") if name.strip()]
    if not profiles:
        raise EdgecnnError("--device names no device")
    folder, export_dir = _bundle_folder(bundle, model, dataset, exports_root, data_dir)
    manifest = load_bundle(folder)  # every sha256, once, before anything runs
    if precision and set(precision.split(",")) - {"fp32", "int8"}:
        raise EdgecnnError(f"unknown precision in {precision!r}; known: fp32, int8")
    plan = BenchPlan(runs=runs, warmup=warmup, threads=_int_list(threads) if threads else None,
                     formats=parse_formats(formats) if formats else None,
                     precisions=tuple(precision.split(",")) if precision else None, sample=sample, timeout=timeout,
                     checkpoint=_reference_checkpoint(checkpoint, export_dir) if reference else None)
    if reference and plan.checkpoint is None and any(is_host(p) for p in profiles):
        err.print("no PyTorch reference row: the checkpoint of this bundle was not found (pass --checkpoint)",
                  highlight=False)
    store = ResultStore(store_path)
    with _progress(profiles, manifest, plan) as tick:
        session, outcomes = run_bench(profiles, folder, manifest, plan, store, tick)
    rows = [r for o in outcomes for r in o.rows]
    errors = [e for o in outcomes for e in o.errors]
    if as_json:
        print(json.dumps({"session": session, "store": str(store.path), "bundle": str(folder),
                          "rows": [{k: v for k, v in r.items() if k != "predictions"} for r in rows],
                          "errors": errors}, indent=2))
    else:
        out.print(_table(rows, session))
        out.print(f"{len(rows)} measurements in {store.path} (session {session})", highlight=False, markup=False)
    for error in errors:  # plain print: one line each, never wrapped by rich
        print(f"edgecnn: error: {error}", file=sys.stderr)
    if errors:
        raise typer.Exit(1)


def _int_list(text: str) -> tuple[int, ...]:
    from edgecnn.errors import EdgecnnError

    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise EdgecnnError(f"--threads wants a comma list of positive integers, not {text!r}") from None
    if not values or min(values) < 1:
        raise EdgecnnError(f"--threads wants a comma list of positive integers, not {text!r}")
    return values


def _bundle_folder(bundle, model, dataset, exports_root, data_dir) -> tuple[Path, Path | None]:
    """(verified bundle folder, export folder it came from if known). A .tar.gz is unpacked into the cache."""
    from edgecnn.errors import EdgecnnError
    from edgecnn.export.bundle import extract_bundle, make_bundle
    from edgecnn.export.pipeline import find_export
    from edgecnn.io import cache_dir, sha256_file

    if bundle is None:
        if model is None:
            raise EdgecnnError("say what to bench: --bundle DIR|TAR, or --model NAME [--dataset D]")
        export_dir = find_export(model, dataset, exports_root)
        folder = export_dir / "bundle"
        if not (folder / "manifest.json").is_file():
            err.print(f"no bundle in {export_dir}; building it", highlight=False, markup=False)
            make_bundle(export_dir, folder, data_dir=data_dir)
        return folder, export_dir
    path = Path(bundle)
    if path.is_file():
        if not path.name.endswith((".tar.gz", ".tgz")):
            raise EdgecnnError(f"{path} is neither a bundle folder nor a .tar.gz")
        target = cache_dir() / "bundles" / sha256_file(path)[:16]
        folder = extract_bundle(path, target) if not target.is_dir() else next(p for p in target.iterdir() if p.is_dir())
        return folder, None
    if not path.is_dir():
        raise EdgecnnError(f"bundle not found: {path}")
    return path, path.parent if (path.parent / "export.json").is_file() else None


def _reference_checkpoint(checkpoint: str | None, export_dir: Path | None) -> str | None:
    from edgecnn.errors import EdgecnnError

    if checkpoint:
        if not Path(checkpoint).is_file():
            raise EdgecnnError(f"checkpoint not found: {checkpoint}")
        return checkpoint
    if export_dir is None:
        return None
    try:
        recorded = json.loads((export_dir / "export.json").read_text()).get("checkpoint")
    except (OSError, ValueError):
        return None
    return recorded if recorded and Path(recorded).is_file() else None


@contextmanager
def _progress(profiles, manifest, plan):
    """tick(device, activity, units done): one rich bar per device on a terminal, plain lines otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgecnn.bench.harness import steps

    if not err.is_terminal:
        yield lambda device, text, done: err.print(f"{device}: {text}", highlight=False, markup=False)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[now]}"),
                  TimeElapsedColumn(), console=err) as progress:
        tasks = {p.name: progress.add_task(p.name, total=steps(p, manifest, plan), now="") for p in profiles}
        yield lambda device, text, done: progress.update(tasks[device], completed=done, now=text)


def _table(rows: list[dict], session: str) -> Table:
    table = Table(title=f"bench {session}: batch 1, latency in ms, accuracy on the bundle's sample")
    for column in ("device", "arch", "file", "runtime", "thr", "p50", "p90", "p99", "mean±std", "load", "peak MiB",
                   "accuracy", "= host"):
        table.add_column(column, justify="right" if column not in ("device", "arch", "file", "runtime") else "left")
    for r in rows:
        agreement = r.get("host_agreement")
        table.add_row(r["device"], r["arch"] or "?", r["file"], str(r["runtime"]), str(r["threads"]),
                      f"{r['p50_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}",
                      f"{r['mean_ms']:.3f}±{r['std_ms']:.3f}", f"{r['load_ms']:.0f}", f"{r['peak_rss_mib']:.0f}",
                      f"{r['accuracy']:.2%} /{r['sample_images']}",
                      "-" if agreement is None else f"{agreement:.1%}")
    return table
