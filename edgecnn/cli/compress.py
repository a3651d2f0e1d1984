"""`edgecnn compress ...`: post-training compression of a finished run into a new run (lineage recorded)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .console import out
from .options import CheckpointOpt, DataDirOpt, RunOpt, RunsDirOpt

app = typer.Typer(no_args_is_help=True, help="Prune, distill or quantization-aware-train a finished run.")

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Zoo model: its newest finished run.")]
DatasetOpt = Annotated[str | None, typer.Option("--dataset", "-d", help="With --model: the run's dataset.")]
NameOpt = Annotated[str | None, typer.Option(help="Name of the new run directory.")]
EpochsOpt = Annotated[int, typer.Option("--max-epochs", min=1, help="Fine-tune epochs at most (per step).")]
LrOpt = Annotated[float, typer.Option(help="Fine-tune learning rate (SGD, momentum 0.9).")]
PatienceOpt = Annotated[int, typer.Option(min=0, help="Early stopping on the training loss (0 = off).")]
ImagesOpt = Annotated[int | None, typer.Option("--images-per-epoch", min=1,
                                               help="Train each epoch on a seeded subset (CPU budgets).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1)]
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="CPU threads.")]


def _parent(checkpoint, run, model, dataset, runs_dir, data_dir):
    from edgecnn.compress.methods import load_parent
    from edgecnn.runs import resolve_checkpoint

    return load_parent(resolve_checkpoint(checkpoint=checkpoint, run=run, model=model, dataset=dataset,
                                          root=runs_dir), data_dir)


def _threads(threads: int | None) -> None:
    import torch

    torch.set_flush_denormal(True)
    if threads:
        torch.set_num_threads(threads)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


@app.command("prune")
def prune_cmd(
    model: ModelOpt = None, dataset: DatasetOpt = None, run: RunOpt = None, checkpoint: CheckpointOpt = None,
    steps: Annotated[int, typer.Option(min=1, help="Pruning steps.")] = 10,
    amount: Annotated[float, typer.Option(min=0.01, max=0.99, help="Share of the remaining conv weights per step.")] = 0.2,
    max_epochs: EpochsOpt = 50, lr: LrOpt = 1e-4, patience: PatienceOpt = 5, images_per_epoch: ImagesOpt = None,
    batch_size: BatchOpt = 128, seed: int = 0, threads: ThreadsOpt = None, data_dir: DataDirOpt = None,
    runs_dir: RunsDirOpt = None, name: NameOpt = None,
) -> None:
    """The paper's pruning: global L1 unstructured on every Conv2d, AMOUNT of the rest per step, fine-tune after
    each step (defaults: the paper's SGD lr 1e-4, early stopping, at most 50 epochs). Prints the paper-style table."""
    from edgecnn.compress.methods import FinetuneConfig
    from edgecnn.compress.methods.unstructured import iterative_prune

    from .progress import reporter

    _threads(threads)
    parent = _parent(checkpoint, run, model, dataset, runs_dir, data_dir)
    config = FinetuneConfig(epochs=max_epochs, lr=lr, patience=patience, images_per_epoch=images_per_epoch,
                            batch_size=batch_size, seed=seed)
    config.check()
    result, rows = iterative_prune(parent, steps=steps, amount=amount, finetune_config=config, runs_dir=runs_dir,
                                   name=name, reporter=reporter(), on_step=_print_step)
    out.print(pruning_table(rows, f"{parent.payload['model']}: global L1 unstructured pruning ({result.path})"))


def _print_step(row: dict) -> None:
    from .console import err

    err.print(f"step {row['step']}: sparsity {row['sparsity']:.1%}, non-zero {row['nonzero']:,}, "
              f"test {_pct(row['test_acc'])} %", highlight=False)


def pruning_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for column in ("step", "sparsity %", "non-zero", "test acc %", "val acc %", "epochs", "seconds"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["step"]), f"{100 * row['sparsity']:.1f}", f"{row['nonzero']:,}", _pct(row["test_acc"]),
                      _pct(row["val_acc"]), str(row["epochs"]), f"{row['seconds']:.0f}")
    return table
