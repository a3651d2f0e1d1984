"""`edgecnn export`: a trained run -> ONNX / TFLite files (fp32, int8) with the accuracy of each file."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .console import err, out
from .options import CheckpointOpt, DataDirOpt, JsonOpt, RunOpt, RunsDirOpt


class RichProgress:
    """edgecnn.export.pipeline.Progress drawn as rich bars on stderr (plain lines when stderr is not a terminal)."""

    @contextlib.contextmanager
    def task(self, description: str, total: int):
        if not err.is_terminal:
            err.print(f"{description} ({total} images)", markup=False, highlight=False)
            yield lambda n: None
            return
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True) as bars:
            task = bars.add_task(description, total=total)
            yield lambda n: bars.advance(task, n)

    def note(self, message: str) -> None:
        err.print(message, markup=False, highlight=False)


def _run_name(checkpoint: Path) -> str:
    """The run folder's name of a checkpoint inside a run, else the checkpoint file's stem."""
    return checkpoint.parent.name if checkpoint.parent.joinpath("config.json").is_file() else checkpoint.stem


def clean_head_checkpoint(path: Path, runs_dir: str | None, data_dir: str | None) -> Path:
    """The checkpoint of `path`'s clean-head run (<run>-head-clean beside it), fitted now unless it already exists."""
    from edgecnn.compress.methods import load_parent
    from edgecnn.errors import EdgecnnError
    from edgecnn.runs import load_checkpoint, runs_root

    from .compress import clean_head_with_progress

    if load_checkpoint(path).get("head") == "clean":
        return path
    name = f"{_run_name(path)}-head-clean"
    existing = runs_root(runs_dir) / name
    if (existing / "result.json").is_file():
        lineage = json.loads((existing / "config.json").read_text()).get("lineage", {})
        if Path(lineage.get("parent_checkpoint", "")).resolve() == path.resolve():
            err.print(f"using the clean head fitted before: {existing}", markup=False, highlight=False)
            return existing / "best.pt"
        raise EdgecnnError(f"{existing} exists but was derived from {lineage.get('parent_checkpoint')}; "
                           "remove it or run 'edgecnn compress clean-head --name ...'")
    if existing.exists():
        raise EdgecnnError(f"{existing} exists but has no result.json (an interrupted clean-head fit?); remove it "
                           "and run again")
    result_run, result = clean_head_with_progress(load_parent(path, data_dir), runs_dir, name)
    err.print(f"clean head fitted: {result_run.path} (test {result['parent_test_acc']:.2%} -> {result['test_acc']:.2%})",
              markup=False, highlight=False)
    return result_run.path / "best.pt"


def _pct(value) -> str:
    return "-" if value is None else f"{value:.2%}"


def export_table(report: dict) -> Table:
    reference = report["artifacts"][0]["accuracy"]
    table = Table(title=f"{report['model']} on {report['dataset']} {report['split']} "
                        f"({report['images']} images, accuracy through each file's runtime)")
    for column, justify in (("artifact", "left"), ("file", "left"), ("size KiB", "right"), ("gzip KiB", "right"),
                            ("accuracy", "right"),
                            ("Δ vs fp32 pp", "right"), ("top-1 agree", "right"), ("mean |Δlogit|", "right"),
                            ("max |Δlogit|", "right"), ("status", "left")):
        table.add_column(column, justify=justify)
    for row in report["artifacts"]:
        delta = "-" if row["accuracy"] is None else f"{(row['accuracy'] - reference) * 100:+.2f}"
        table.add_row(row["name"], row["file"] or "-", "-" if row["bytes"] is None else f"{row['bytes'] / 1024:,.1f}",
                      "-" if row.get("gzip_bytes") is None else f"{row['gzip_bytes'] / 1024:,.1f}",
                      _pct(row["accuracy"]), delta, _pct(row["agreement"]),
                      "-" if row["logit_mae"] is None else f"{row['logit_mae']:.4f}",
                      "-" if row["logit_max_err"] is None else f"{row['logit_max_err']:.4f}",
                      row["status"] if row["status"] == "ok" else f"{row['status']}: {row['error']}")
    return table


def export(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Zoo model; exports its newest finished run.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset of the run (default: any).")] = None,
    checkpoint: CheckpointOpt = None,
    run: RunOpt = None,
    int8: Annotated[bool, typer.Option("--int8", help="Also write int8 files, calibrated on training images.")] = False,
    formats: Annotated[str, typer.Option("--formats", help="Comma list: onnx, tflite.")] = "onnx,tflite",
    calib_samples: Annotated[int, typer.Option("--calib-samples", min=1,
                                               help="Training images for int8 calibration.")] = 1000,
    calib_method: Annotated[str, typer.Option("--calib-method", help="minmax or percentile (ONNX).")] = "minmax",
    onnx_scheme: Annotated[str, typer.Option("--onnx-scheme", help="u8s8 (x86 without VNNI) or s8s8 (ARM).")] = "u8s8",
    ghost_fp32: Annotated[str, typer.Option("--ghost-fp32", help="Ghost-module rewrite for fp32 files: auto (depthwise where it absorbs a channel shuffle), depthwise, fold or none (all exact; export/reparam.py).")] = "auto",
    ghost_int8: Annotated[str, typer.Option("--ghost-int8", help="Ghost-module rewrite for int8 files: depthwise (fully integer graphs), auto, fold or none.")] = "depthwise",
    tflite_layout: Annotated[str, typer.Option("--tflite-layout", help="Input layout of the TFLite files: NHWC (channel-last, no layout op at the input) or NCHW; the runner reads it off the file.")] = "NHWC",
    head: Annotated[str, typer.Option("--head", help="faithful (the paper's ReLU6/ReLU on the logits) or clean: "
                                      "drop it and refit the last layer first (a derived run <run>-head-clean).")] = "faithful",
    split: Annotated[str, typer.Option(help="Split the accuracy is measured on: test or val.")] = "test",
    threads: Annotated[int | None, typer.Option(min=1, help="Runtime threads while measuring accuracy.")] = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="Output folder (default artifacts/<run name>).")] = None,
    which: Annotated[str, typer.Option(help="best or last checkpoint of a run.")] = "best",
    make_bundle: Annotated[bool, typer.Option("--bundle/--no-bundle",
                                              help="Also write <out>/bundle and bundle.tar.gz.")] = True,
    data_dir: DataDirOpt = None,
    runs_dir: RunsDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a trained model to ONNX and TFLite (fp32, and int8 with --int8) and measure every file's accuracy."""
    from edgecnn.errors import EdgecnnError
    from edgecnn.export.onnx import CALIBRATION_METHODS, INT8_SCHEMES
    from edgecnn.export.pipeline import ExportOptions, export_checkpoint, parse_formats
    from edgecnn.export.reparam import check_ghost_rewrite
    from edgecnn.export.tflite import check_layout
    from edgecnn.runs import resolve_checkpoint

    if calib_method not in CALIBRATION_METHODS:
        raise EdgecnnError(f"--calib-method must be one of {', '.join(CALIBRATION_METHODS)} (entropy is not offered: "
                           "see edgecnn/export/onnx.py)")
    if onnx_scheme not in INT8_SCHEMES:
        raise EdgecnnError(f"--onnx-scheme must be one of {', '.join(INT8_SCHEMES)}")
    check_ghost_rewrite(ghost_fp32, "--ghost-fp32")  # before a checkpoint is read: a typo fails at once
    check_ghost_rewrite(ghost_int8, "--ghost-int8")
    check_layout(tflite_layout, "--tflite-layout")
    if split not in ("test", "val"):
        raise EdgecnnError("--split must be test or val (the training split calibrates int8)")
    if not (model or checkpoint or run):
        raise EdgecnnError("say which model: --model NAME [--dataset D], --run DIR or --checkpoint PATH")
    if head not in ("faithful", "clean"):
        raise EdgecnnError("--head must be faithful or clean")
    path = resolve_checkpoint(checkpoint=checkpoint, run=run, model=model, dataset=dataset, root=runs_dir, which=which)
    if head == "clean":
        path = clean_head_checkpoint(path, runs_dir, data_dir)
        model = None  # the derived run names its model itself
    if out_dir is None:
        out_dir = str(Path("artifacts") / _run_name(path))
    options = ExportOptions(formats=parse_formats(formats), int8=int8, calib_samples=calib_samples,
                            calib_method=calib_method, onnx_scheme=onnx_scheme, split=split, threads=threads,
                            ghost_fp32=ghost_fp32, ghost_int8=ghost_int8, tflite_layout=tflite_layout)
    report = export_checkpoint(path, out_dir, options, data_dir=data_dir, model_name=model, progress=RichProgress())
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        out.print(export_table(report))
        out.print(f"files and export.json in {out_dir}", markup=False, highlight=False)
    if make_bundle and any(row["status"] == "ok" and row["file"] for row in report["artifacts"]):
        from edgecnn.export.bundle import make_bundle as build_bundle

        folder = build_bundle(out_dir, Path(out_dir) / "bundle", data_dir=data_dir)
        if not as_json:
            out.print(f"deployment bundle in {folder} and {folder}.tar.gz", markup=False, highlight=False)
    if any(row["status"] != "ok" for row in report["artifacts"]):
        raise typer.Exit(1)  # partial success: every row is written, but scripts must notice the failure
