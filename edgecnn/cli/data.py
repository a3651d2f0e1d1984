"""`edgecnn data`: inspect a dataset, or write a small synthetic one in CIFAR's real file format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .console import out
from .options import DataDirOpt, DownloadOpt, NoVerifyOpt

app = typer.Typer(no_args_is_help=True, help="Datasets: inspect one, or generate synthetic CIFAR files.")


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="cifar10, cifar100 or fashion-mnist.")],
         data_dir: DataDirOpt = None, download: DownloadOpt = False, no_verify: NoVerifyOpt = False) -> None:
    """Load a dataset and print its splits, classes and normalisation."""
    from edgecnn.data import load_dataset

    print(json.dumps(load_dataset(name, data_dir, download=download, verify=not no_verify).describe(), indent=2))


@app.command("synthetic-cifar")
def synthetic_cifar(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (as --data-dir for cifar10/cifar100).")],
    num_classes: Annotated[int, typer.Option(help="10 (CIFAR-10 format) or 100 (CIFAR-100 format).")] = 10,
    train_size: Annotated[int, typer.Option(min=10, help="Training images.")] = 5000,
    test_size: Annotated[int, typer.Option(min=10, help="Test images.")] = 1000,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
) -> None:
    """Write a small learnable dataset in CIFAR's python pickle format (for tests and dry runs)."""
    from edgecnn.data import write_synthetic_cifar

    folder = write_synthetic_cifar(out_dir, num_classes, train_size, test_size, seed)
    dataset = "cifar10" if num_classes == 10 else "cifar100"
    out.print(f"wrote {folder}; use it with --dataset {dataset} --data-dir {out_dir}", markup=False, highlight=False)
