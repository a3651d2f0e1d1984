"""`edgecnn reproduce`: regenerate the paper's results from the zoo and from edgecnn runs."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .console import err, out
from .options import (CpusPerTaskOpt, DataDirOpt, DownloadOpt, GpusPerTaskOpt, JsonOpt, RayOpt, RunsDirOpt,
                      WorkdirOpt)

app = typer.Typer(no_args_is_help=True, help="Regenerate the paper's tables from the zoo and from runs.")


@app.command("paper-tables")
def paper_tables(
    out_file: Annotated[str | None, typer.Option("--out", help="Also write the Markdown to this file.")] = None,
    train: Annotated[bool, typer.Option("--train", help="First train every variant of the dataset's tables that "
                                        "has no finished run (a sweep; --ray runs it as Ray tasks).")] = False,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="With --train: cifar10 or cifar100.")] = "cifar10",
    models: Annotated[str | None, typer.Option("--models", help="With --train: only these variants (comma list; "
                                               "default: all of the dataset's tables).")] = None,
    recipe: Annotated[str, typer.Option(help="With --train: the training recipe.")] = "paper",
    epochs: Annotated[int | None, typer.Option(min=1, help="With --train: epochs (default: the recipe's).")] = None,
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    ray: RayOpt = None,
    cpus_per_task: CpusPerTaskOpt = 1,
    gpus_per_task: GpusPerTaskOpt = 0,
    workdir: WorkdirOpt = None,
    runs_dir: RunsDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The paper's four architecture tables (params, MFLOPs, size) from the zoo beside the published ones; the
    accuracy column from runs on CIFAR-10/100 when they exist (--train makes them)."""
    from edgecnn.io import atomic_write_text
    from edgecnn.report.paper_tables import paper_tables as build, tables_markdown
    from edgecnn.runs import runs_root

    failed = False
    if train:
        runs_dir, failed = _train_variants(dataset, models, recipe, epochs, data_dir, download, ray, cpus_per_task,
                                           gpus_per_task, workdir, runs_dir)
    tables = build(runs_root(runs_dir))
    if as_json:
        print(json.dumps(tables, indent=2))
    else:
        out.print(tables_markdown(tables), markup=False, highlight=False)
    if out_file:
        atomic_write_text(out_file, tables_markdown(tables) + "\n")
    if failed:
        raise typer.Exit(1)  # the tables still print what the finished runs give


def _train_variants(dataset, models, recipe, epochs, data_dir, download, ray, cpus_per_task, gpus_per_task,
                    workdir, runs_dir) -> tuple[str | None, bool]:
    """Train the variants without a finished run (the pipeline's train stage, serially or as Ray tasks); a
    variant that fails is a row of the table printed here. Returns (the runs folder, whether one failed)."""
    from edgecnn.compress.zoo.paper import PUBLISHED
    from edgecnn.errors import EdgecnnError
    from edgecnn.pipeline import PipelineConfig, run_pipeline

    from .pipeline import CliHooks, stage_table

    classes = {"cifar10": 10, "cifar100": 100}.get(dataset.lower().replace("-", ""))
    if classes is None:
        raise EdgecnnError(f"--dataset {dataset!r}: the paper's tables are on cifar10 or cifar100")
    names = [m.strip() for m in models.split(",") if m.strip()] if models else sorted(
        {name for name, c in PUBLISHED if c == classes})
    config = PipelineConfig(models=tuple(names), dataset=dataset, recipe=recipe, epochs=epochs, data_dir=data_dir,
                            download=download, runs_dir=runs_dir, train_only=True, ray=ray,
                            cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, workdir=workdir)
    log, _, _, _ = run_pipeline(config, CliHooks())
    err.print(stage_table(log, "training"))
    if ray:
        from edgecnn.sweep import placed

        runs_dir = placed(config).runs_dir  # where the tasks wrote them
    return runs_dir, any(status == "failed" for _, _, status, _ in log.entries)
