"""`edgecnn pipeline`: the main job. Models -> trained runs -> ONNX/TFLite fp32+int8 -> bundles -> bench on each
device -> report. A rerun skips every stage whose output is already there (see edgecnn/pipeline.py)."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Annotated

import typer
from rich.table import Table

from edgecnn.errors import one_line
from edgecnn.pipeline import Hooks, PipelineConfig

from .console import err, out
from .options import (CalibMethodOpt, CalibSamplesOpt, DataDirOpt, DownloadOpt, FormatsOpt, FormsOpt, GhostFp32Opt,
                      GhostInt8Opt, NcnnFallbackOpt, NoVerifyOpt, OnnxSchemeOpt, RunsDirOpt, TfliteLayoutOpt)
from .options import CpusPerTaskOpt, GpusPerTaskOpt, RayOpt, WorkdirOpt
from .report import MaxDropOpt, OutOpt, StoreOpt


EXPORT = PipelineConfig().export


class CliHooks(Hooks):
    """edgecnn.pipeline.Hooks drawn with the same bars as `train`, `export` and `bench`."""

    def stage(self, model: str, name: str) -> None:
        err.rule(f"{model}: {name}" if model != "all" else name)

    def train_reporter(self):
        from .progress import reporter

        return reporter()

    def export_progress(self):
        from .progress import RichProgress

        return RichProgress()

    def sweep_event(self, model: str, what: str, state: dict) -> None:
        from edgecnn.sweep import summary

        err.print(f"{model}: {what}  [{summary(state)}]", markup=False, highlight=False)

    def bench_tick(self, profiles, manifest, plan):
        from .progress import bench_progress

        return bench_progress(profiles, manifest, plan)


def pipeline(
    models: Annotated[str, typer.Option("--models", help="Comma list of models: zoo names, timm:NAME, module:function or file.py:function.")] = "exp13",
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="cifar10, cifar100 or fashion-mnist.")] = "fashion-mnist",
    recipe: Annotated[str, typer.Option(help="Training recipe for models without a finished run.")] = "fast",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (1 keeps a first run under half an hour).")] = 1,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (recipe default).")] = None,
    retrain: Annotated[bool, typer.Option("--retrain", help="Train even when a finished run exists.")] = False,
    formats: FormatsOpt = ",".join(EXPORT.formats),
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="Also export int8 (calibrated on training images).")] = EXPORT.int8,
    fp16: Annotated[bool, typer.Option("--fp16/--no-fp16", help="Also export fp16 files.")] = EXPORT.fp16,
    forms: FormsOpt = ",".join(EXPORT.forms),
    calib_samples: CalibSamplesOpt = EXPORT.calib_samples,
    calib_method: CalibMethodOpt = EXPORT.calib_method,
    onnx_scheme: OnnxSchemeOpt = EXPORT.onnx_scheme,
    ghost_fp32: GhostFp32Opt = EXPORT.ghost_fp32,
    ghost_int8: GhostInt8Opt = EXPORT.ghost_int8,
    tflite_layout: TfliteLayoutOpt = EXPORT.tflite_layout,
    ncnn_fallback: NcnnFallbackOpt = EXPORT.ncnn_fallback,
    device: Annotated[str, typer.Option("--device", help="Device profile(s), comma-separated.")] = "host",
    threads: Annotated[str | None, typer.Option(help="Comma list of thread counts (default: each profile's).")] = None,
    runs: Annotated[int, typer.Option("--bench-runs", min=1, help="Timed inferences per measurement.")] = PipelineConfig.bench_runs,
    sample: Annotated[int | None, typer.Option(min=1, help="Score only the first N sample images on devices.")] = None,
    max_drop: MaxDropOpt = 1.0,
    qat_above: Annotated[float, typer.Option("--qat-above", help="Make, export and bench a quantization-aware fine-tune (<run>-qat) when an int8 file loses more than this many points of accuracy.")] = 0.5,
    qat: Annotated[bool, typer.Option("--qat/--no-qat", help="Whether --qat-above may trigger a QAT run.")] = True,
    qat_epochs: Annotated[int, typer.Option("--qat-epochs", min=1, help="Epochs of that fine-tune.")] = 1,
    out_dir: OutOpt = "results/report",
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    no_verify: NoVerifyOpt = False,
    runs_dir: RunsDirOpt = None,
    exports_root: Annotated[str, typer.Option("--exports-root", help="Where exports are written.")] = "artifacts",
    store_path: StoreOpt = None,
    ray: RayOpt = None,
    cpus_per_task: CpusPerTaskOpt = 1,
    gpus_per_task: GpusPerTaskOpt = 0,
    workdir: WorkdirOpt = None,
) -> None:
    """Train (or reuse), export, bundle, bench and report, skipping what is already done."""
    from edgecnn.pipeline import PipelineConfig, run_pipeline
    from edgecnn.report.render import recommendation_lines

    from .options import int_list

    config = PipelineConfig(models=tuple(m.strip() for m in models.split(",") if m.strip()), dataset=dataset,
                            recipe=recipe, epochs=epochs, lr=lr, retrain=retrain,
                            export=replace(EXPORT, formats=formats, forms=forms, int8=int8, fp16=fp16,
                                           calib_samples=calib_samples,
                                           calib_method=calib_method, onnx_scheme=onnx_scheme, ghost_fp32=ghost_fp32,
                                           ghost_int8=ghost_int8, tflite_layout=tflite_layout,
                                           ncnn_fallback=ncnn_fallback).checked(),
                            devices=tuple(d.strip() for d in device.split(",") if d.strip()),
                            threads=int_list(threads) if threads else None, bench_runs=runs, sample=sample,
                            max_drop=max_drop, qat_above_pp=qat_above if qat else None, qat_epochs=qat_epochs,
                            data_dir=data_dir, download=download, verify=not no_verify, runs_dir=runs_dir, artifacts_dir=exports_root,
                            store=store_path, report_dir=out_dir, ray=ray, cpus_per_task=cpus_per_task,
                            gpus_per_task=gpus_per_task, workdir=workdir)
    log, data, files, errors = run_pipeline(config, CliHooks())
    out.print(stage_table(log, "pipeline"))
    if data.deployment:
        out.print(files_table(data.deployment))
    for line in recommendation_lines(data.recommendations):
        out.print(line, markup=False, highlight=False)
    out.print(f"report: {files['report.html']} (also report.md, CSV, JSON, PNGs)", markup=False, highlight=False)
    for error in errors:
        print(f"edgecnn: error: {one_line(error)}", file=sys.stderr)
    if errors or any(status == "failed" for _, _, status, _ in log.entries):
        raise typer.Exit(1)


def stage_table(log, title: str) -> Table:
    """The closing table: what each stage (or Ray task) of each model did."""
    table = Table(title=title)
    for column in ("model", "stage", "status", "detail"):
        table.add_column(column)
    for entry in log.entries:
        table.add_row(*entry)
    return table


def files_table(rows: list[dict]) -> Table:
    """One row per measured file and thread count: what the report's deployment table holds, for the console."""
    table = Table(title="files: test accuracy through each runtime, p50 and peak memory on the device")
    for column in ("device", "model", "file", "threads", "test accuracy %", "p50 ms", "peak MiB"):
        table.add_column(column, justify="right" if column in ("threads", "test accuracy %", "p50 ms", "peak MiB")
                         else "left")
    for row in rows:
        accuracy = row["test_acc"]  # the whole test split through the file's runtime (not the device's sample)
        table.add_row(row["device"], row["model"], row["file"], str(row["threads"] or "-"),
                      "-" if accuracy is None else f"{100 * accuracy:.2f}",
                      "-" if row["p50_ms"] is None else f"{row['p50_ms']:.3f}",
                      "-" if row["peak_rss_mib"] is None else f"{row['peak_rss_mib']:.1f}")
    return table
