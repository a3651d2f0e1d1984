"""`edgecnn train`: train a zoo model; `--resume RUN` continues a killed run. Works under torchrun for DDP."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .console import out
from .options import DataDirOpt, DatasetOpt, DownloadOpt, InChansOpt, NoVerifyOpt, RunsDirOpt


def train(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Zoo model (exp13), timm:NAME, or a factory module:function / file.py:function.")] = None,
    dataset: DatasetOpt = "fashion-mnist",
    recipe: Annotated[str, typer.Option(help="paper1, paper2, fast or micronet (edgecnn train --recipes).")] = "fast",
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs (recipe default).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Global batch size (recipe default).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (recipe default).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay (recipe default).")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="Label smoothing (recipe default).")] = None,
    augment: Annotated[bool | None, typer.Option("--augment/--no-augment", help="Random crop 4 px + flip.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for init, data order and augmentation.")] = 0,
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    no_verify: NoVerifyOpt = False,
    in_chans: InChansOpt = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads (torch default: one per core).")] = None,
    channels_last: Annotated[bool | None, typer.Option("--channels-last/--no-channels-last",
                                                       help="Default: on for CUDA, off for CPU.")] = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    grad_accum: Annotated[int, typer.Option(min=1, help="Micro-batches per step.")] = 1,
    nondeterministic: Annotated[bool, typer.Option("--nondeterministic", help="Allow non-deterministic kernels.")] = False,
    runs_dir: RunsDirOpt = None,
    name: Annotated[str | None, typer.Option(help="Run directory name (default: model-dataset-recipe-seed-time).")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue this run directory from its last epoch.")] = None,
    pretrained: Annotated[str | None, typer.Option(help="A timm model's starting weights: a local file (timm loads it; another class count drops the classifier).")] = None,
    recipes: Annotated[bool, typer.Option("--recipes", help="List the recipes and exit.")] = False,
) -> None:
    """Train a model (zoo, timm or your own factory); the run (config, metrics, checkpoints, test accuracy) lands in --runs-dir."""
    from edgecnn.compress.train import RECIPES, TrainConfig
    from edgecnn.compress.train import train as run_training
    from edgecnn.errors import EdgecnnError

    from .progress import reporter

    if recipes:
        for item in RECIPES.values():
            out.print(f"[bold]{item.name}[/]: {item.description} ({item.epochs} epochs, batch {item.batch_size}, "
                      f"{item.optimizer} lr {item.lr})")
        return
    if resume:
        run = run_training(resume=resume, reporter=reporter())
    else:
        if not model:
            raise EdgecnnError("--model is required (or --resume RUN_DIR)")
        config = TrainConfig(model=model, dataset=dataset, recipe=recipe, epochs=epochs, batch_size=batch_size, lr=lr,
                             weight_decay=weight_decay, label_smoothing=label_smoothing, augment=augment, seed=seed,
                             data_dir=data_dir, download=download, verify=not no_verify, in_chans=in_chans, device=device, threads=threads,
                             channels_last=channels_last, compile=compile_model, grad_accum=grad_accum,
                             deterministic=not nondeterministic, runs_dir=runs_dir, name=name,
                             pretrained=pretrained)
        config.recipe_values()  # unknown recipe -> one-line error before any data is loaded
        run = run_training(config, reporter=reporter())
    if os.environ.get("RANK", "0") == "0" and run.result:  # under torchrun, rank 0 speaks for the run
        out.print(f"{run.path}: test accuracy {run.result['test_acc']:.2%}", markup=False, highlight=False)
