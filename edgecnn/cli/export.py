"""`edgecnn export`: a trained run -> ONNX / TFLite files (fp32, int8) with the accuracy of each file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .console import out
from edgecnn.export.options import ExportOptions

from .progress import RichProgress
from .options import (CalibMethodOpt, CalibSamplesOpt, CheckpointOpt, DataDirOpt, FormatsOpt, FormsOpt, GhostFp32Opt,
                      GhostInt8Opt, JsonOpt, NcnnFallbackOpt, OnnxSchemeOpt, RunOpt, RunsDirOpt, TfliteLayoutOpt)


def _run_name(checkpoint: Path) -> str:
    """The run folder's name of a checkpoint inside a run, else the checkpoint file's stem."""
    return checkpoint.parent.name if checkpoint.parent.joinpath("config.json").is_file() else checkpoint.stem


def _pct(value) -> str:
    return "-" if value is None else f"{value:.2%}"


def export_table(report: dict) -> Table:
    reference = report["artifacts"][0]["accuracy"]
    table = Table(title=f"{report['model']} on {report['dataset']} {report['split']} "
                        f"({report['images']} images, accuracy through each file's runtime)")
    for column, justify in (("artifact", "left"), ("file", "left"), ("form", "left"), ("MMACs", "right"),
                            ("ops", "right"), ("size KiB", "right"), ("gzip KiB", "right"), ("accuracy", "right"),
                            ("top-5", "right"), ("Δ vs fp32 pp", "right"), ("top-1 agree", "right"), ("mean |Δlogit|", "right"),
                            ("max |Δlogit|", "right"), ("status", "left")):
        table.add_column(column, justify=justify)
    for row in report["artifacts"]:
        delta = "-" if row["accuracy"] is None else f"{(row['accuracy'] - reference) * 100:+.2f}"
        table.add_row(row["name"], row["file"] or "-", row.get("form") or "-",
                      "-" if row.get("mmacs") is None else f"{row['mmacs']:.2f}",
                      "-" if row.get("ops") is None else str(row["ops"]),
                      "-" if row["bytes"] is None else f"{row['bytes'] / 1024:,.1f}",
                      "-" if row.get("gzip_bytes") is None else f"{row['gzip_bytes'] / 1024:,.1f}",
                      _pct(row["accuracy"]), _pct(row.get("top5")), delta, _pct(row["agreement"]),
                      "-" if row["logit_mae"] is None else f"{row['logit_mae']:.4f}",
                      "-" if row["logit_max_err"] is None else f"{row['logit_max_err']:.4f}",
                      row["status"] if row["status"] == "ok" else f"{row['status']}: {row['error']}")
    return table


DEFAULTS = ExportOptions()


def export(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model (zoo, timm:NAME or a factory); exports its newest finished run.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset of the run (default: any).")] = None,
    checkpoint: CheckpointOpt = None,
    run: RunOpt = None,
    int8: Annotated[bool, typer.Option("--int8", help="Also write int8 files, calibrated on training images.")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="Also write fp16 files (float16 weights; fp16 arithmetic where "
                                       "the board has it).")] = False,
    formats: FormatsOpt = ",".join(DEFAULTS.formats),
    calib_samples: CalibSamplesOpt = DEFAULTS.calib_samples,
    calib_method: CalibMethodOpt = DEFAULTS.calib_method,
    onnx_scheme: OnnxSchemeOpt = DEFAULTS.onnx_scheme,
    ghost_fp32: GhostFp32Opt = DEFAULTS.ghost_fp32,
    ghost_int8: GhostInt8Opt = DEFAULTS.ghost_int8,
    forms: FormsOpt = ",".join(DEFAULTS.forms),
    tflite_layout: TfliteLayoutOpt = DEFAULTS.tflite_layout,
    ncnn_fallback: NcnnFallbackOpt = DEFAULTS.ncnn_fallback,
    head: Annotated[str, typer.Option("--head", help="faithful (the paper's ReLU6/ReLU on the logits) or clean: "
                                      "drop it and refit the last layer first (a derived run <run>-head-clean).")] = "faithful",
    split: Annotated[str, typer.Option(help="Split the accuracy is measured on: test or val.")] = DEFAULTS.split,
    threads: Annotated[int | None, typer.Option(min=1, help="Runtime threads while measuring accuracy.")] = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="Output folder (default artifacts/<run name>).")] = None,
    which: Annotated[str, typer.Option(help="best or last checkpoint of a run.")] = "best",
    force: Annotated[bool, typer.Option("--force", help="Replace an export whose bundle exists (its bench rows "
                                        "then drop out of the report).")] = False,
    make_bundle: Annotated[bool, typer.Option("--bundle/--no-bundle",
                                              help="Also write <out>/bundle and bundle.tar.gz.")] = True,
    data_dir: DataDirOpt = None,
    runs_dir: RunsDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a trained model to ONNX and TFLite (fp32; int8 with --int8, fp16 with --fp16) and measure every file's
    accuracy through its own runtime."""
    from edgecnn.errors import EdgecnnError
    from edgecnn.export.pipeline import export_checkpoint
    from edgecnn.compress.rebuild import resolve_checkpoint

    options = ExportOptions(formats=formats, forms=forms, int8=int8, fp16=fp16, calib_samples=calib_samples,
                            calib_method=calib_method, onnx_scheme=onnx_scheme, split=split, threads=threads,
                            ghost_fp32=ghost_fp32, ghost_int8=ghost_int8, tflite_layout=tflite_layout,
                            ncnn_fallback=ncnn_fallback).checked()
    if not (model or checkpoint or run):
        raise EdgecnnError("say which model: --model NAME [--dataset D], --run DIR or --checkpoint PATH")
    if head not in ("faithful", "clean"):
        raise EdgecnnError("--head must be faithful or clean")
    path = resolve_checkpoint(checkpoint=checkpoint, run=run, model=model, dataset=dataset, root=runs_dir, which=which)
    if head == "clean":
        from edgecnn.compress.methods.head import clean_head_for

        path = clean_head_for(path, runs_dir=runs_dir, data_dir=data_dir, progress=RichProgress())
        model = None  # the derived run names its model itself
    if out_dir is None:
        out_dir = str(Path("artifacts") / _run_name(path))
    from edgecnn.export.bundle import check_replaceable

    check_replaceable(out_dir, force)  # never replace files a bundle and its bench rows refer to without --force
    report = export_checkpoint(path, out_dir, options, data_dir=data_dir, model_name=model, progress=RichProgress())
    if force:
        from edgecnn.export.bundle import remove_bundles

        remove_bundles(out_dir)  # they list the replaced files; the new bundle is built below
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
