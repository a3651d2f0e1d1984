"""`edgecnn compress ...`: post-training compression of a finished run into a new run (lineage recorded)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .console import out
from .options import CheckpointOpt, DataDirOpt, RunOpt, RunsDirOpt

app = typer.Typer(no_args_is_help=True, help="Prune, distill or quantization-aware-train a finished run.")

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model (zoo, timm:NAME or a factory): its newest finished run.")]
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
    from edgecnn.compress.rebuild import resolve_checkpoint

    return load_parent(resolve_checkpoint(checkpoint=checkpoint, run=run, model=model, dataset=dataset,
                                          root=runs_dir), data_dir)


def _finetune_config(**values):
    """A command's fine-tune settings, checked before any work starts (a bad value is a one-line error)."""
    from edgecnn.compress.methods import FinetuneConfig

    config = FinetuneConfig(**values)
    config.check()
    return config


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
    from edgecnn.compress.methods.unstructured import iterative_prune

    from .progress import reporter

    _threads(threads)
    parent = _parent(checkpoint, run, model, dataset, runs_dir, data_dir)
    config = _finetune_config(epochs=max_epochs, lr=lr, patience=patience, images_per_epoch=images_per_epoch,
                              batch_size=batch_size, seed=seed)
    result, rows = iterative_prune(parent, steps=steps, amount=amount, finetune_config=config, runs_dir=runs_dir,
                                   name=name, reporter=reporter(), on_step=_print_step)
    out.print(pruning_table(rows, f"{parent.payload['model']}: global L1 unstructured pruning ({result.path})"))



@app.command("structured")
def structured_cmd(
    model: ModelOpt = None, dataset: DatasetOpt = None, run: RunOpt = None, checkpoint: CheckpointOpt = None,
    ratio: Annotated[float, typer.Option(min=0.01, max=0.95, help="Share of the channels of each prunable layer "
                                                                   "(or of all, with --global) to remove.")] = 0.5,
    steps: Annotated[int, typer.Option(min=1, help="Pruning steps to reach RATIO, a fine-tune after each.")] = 1,
    importance: Annotated[str, typer.Option(help="Channel ranking: l1, l2 or bn (BatchNorm scale).")] = "l1",
    global_pruning: Annotated[bool, typer.Option("--global", help="Rank channels across layers (uneven widths).")] = False,
    scan: Annotated[float | None, typer.Option("--scan", min=0.05, max=0.95,
                                               help="Sensitivity scan at this ratio first; per-layer ratios.")] = None,
    max_epochs: EpochsOpt = 10, lr: LrOpt = 0.01, patience: PatienceOpt = 3, images_per_epoch: ImagesOpt = None,
    schedule: Annotated[str, typer.Option(help="plateau or cosine.")] = "cosine",
    batch_size: BatchOpt = 128, seed: int = 0, threads: ThreadsOpt = None, data_dir: DataDirOpt = None,
    runs_dir: RunsDirOpt = None, name: NameOpt = None,
) -> None:
    """Filter/channel pruning with Torch-Pruning: a smaller dense model (fewer params and FLOPs, faster on every
    runtime), fine-tuned after each step (default: SGD lr 0.01 cosine; pruning whole channels loses more than
    masking weights, so it needs a larger step than the paper's 1e-4)."""
    from edgecnn.compress.methods.structured import iterative_structured

    from .progress import reporter

    _threads(threads)
    parent = _parent(checkpoint, run, model, dataset, runs_dir, data_dir)
    config = _finetune_config(epochs=max_epochs, lr=lr, patience=patience, images_per_epoch=images_per_epoch,
                              batch_size=batch_size, seed=seed, schedule=schedule)
    result, rows = iterative_structured(parent, ratio=ratio, steps=steps, importance=importance,
                                        global_pruning=global_pruning, scan_ratio=scan, finetune_config=config,
                                        runs_dir=runs_dir, name=name, reporter=reporter(), on_step=_print_structured)
    out.print(structured_table(rows, f"{parent.payload['model']}: structured pruning ({result.path})"))


@app.command("depth")
def depth_cmd(
    model: ModelOpt = None, dataset: DatasetOpt = None, run: RunOpt = None, checkpoint: CheckpointOpt = None,
    blocks: Annotated[int, typer.Option(min=1, help="Residual blocks (identity shortcut) to remove.")] = 8,
    scan_images: Annotated[int, typer.Option(min=100, help="Validation images scoring each block's removal.")] = 2000,
    max_epochs: EpochsOpt = 3, lr: LrOpt = 0.01, patience: PatienceOpt = 0, images_per_epoch: ImagesOpt = None,
    schedule: Annotated[str, typer.Option(help="plateau or cosine.")] = "cosine",
    batch_size: BatchOpt = 128, seed: int = 0, threads: ThreadsOpt = None, data_dir: DataDirOpt = None,
    runs_dir: RunsDirOpt = None, name: NameOpt = None,
) -> None:
    """Depth pruning: remove the BLOCKS residual blocks whose removal costs the least validation accuracy, then
    fine-tune. Fewer operators, which is what batch-1 CPU latency pays for; combine with 'structured' for width."""
    from edgecnn.compress.methods.depth import depth_prune

    from .progress import reporter

    _threads(threads)
    parent = _parent(checkpoint, run, model, dataset, runs_dir, data_dir)
    config = _finetune_config(epochs=max_epochs, lr=lr, patience=patience, images_per_epoch=images_per_epoch,
                              batch_size=batch_size, seed=seed, schedule=schedule)
    result, rows = depth_prune(parent, blocks=blocks, scan_images=scan_images, finetune_config=config,
                               runs_dir=runs_dir, name=name, reporter=reporter(), on_step=_print_structured)
    removed = result.lineage["settings"]["removed"]
    out.print(structured_table(rows, f"{parent.payload['model']}: {len(removed)} blocks removed ({result.path})"))
    out.print(f"removed: {', '.join(removed)}", highlight=False)


@app.command("bits")
def bits_cmd(
    model: ModelOpt = None, dataset: DatasetOpt = None, run: RunOpt = None, checkpoint: CheckpointOpt = None,
    bits: Annotated[str, typer.Option(help="Comma list of bit widths (2 to 16).")] = "16,12,10,8,6,5,4,3,2",
    targets: Annotated[str, typer.Option(help="Comma list: weights, activations, both.")] = "weights,activations,both",
    quantizer: Annotated[str, typer.Option(help="linear (evenly spaced levels) or log (levels in the log domain).")] = "linear",
    range_: Annotated[str, typer.Option("--range", help="minmax, or percentile (0.01th to 99.99th).")] = "minmax",
    granularity: Annotated[str, typer.Option(help="Weights: per-channel or per-tensor.")] = "per-channel",
    fold: Annotated[bool, typer.Option("--fold/--no-fold", help="Fold BatchNorm into the convs first, as a deployed file.")] = True,
    calib_images: Annotated[int, typer.Option(min=1, help="Training images that set the activation ranges.")] = 512,
    test_images: Annotated[int | None, typer.Option(min=1, help="Score on the first N test images (default: all).")] = None,
    threads: ThreadsOpt = None, data_dir: DataDirOpt = None, runs_dir: RunsDirOpt = None, name: NameOpt = None,
) -> None:
    """Simulated fixed-point quantization: top-1/top-5 on the test split with the weights, the activations, or
    both at each bit width (the ResNet-18/VGG-16 study's table), with each setting's MicroNet score. Information
    for choosing a width: no file is written that a runtime runs."""
    from edgecnn.compress.methods.bits import bit_sweep, check_settings, first_loss
    from edgecnn.errors import EdgecnnError

    from .options import int_list

    _threads(threads)
    widths = int_list(bits, "--bits")
    chosen = [t.strip() for t in targets.split(",") if t.strip()]
    check_settings(widths, chosen, quantizer, range_, granularity)  # before the model and data load
    parent = _parent(checkpoint, run, model, dataset, runs_dir, data_dir)
    if test_images is not None and test_images > len(parent.data.test):
        raise EdgecnnError(f"--test-images {test_images}: the test split has {len(parent.data.test)} images")
    result, rows = bit_sweep(parent, bits=widths, targets=chosen, quantizer=quantizer, range_kind=range_,
                             granularity=granularity, fold=fold, calib_images=calib_images, test_images=test_images,
                             runs_dir=runs_dir, name=name, on_row=_print_bits)
    out.print(bits_table(rows, f"{parent.payload['model']}: simulated {quantizer} quantization ({result.path})"))
    loses = first_loss(rows, 0.01)
    out.print("more than 1 point lost at: " + ", ".join(f"{t} {f'{b} bits' if b else 'no width measured'}"
                                                      for t, b in loses.items()), highlight=False)


def _print_bits(row: dict) -> None:
    from .console import err

    err.print(f"{row['target']} {row['bits']} bits: top-1 {_pct(row['top1'])} %, top-5 {_pct(row['top5'])} %",
              highlight=False)


def bits_table(rows: list[dict], title: str) -> Table:
    """bits x target: top-1 / top-5 %, the rows of the study's table."""
    reference = rows[0]
    targets = [t for t in ("weights", "activations", "both") if any(r["target"] == t for r in rows)]
    table = Table(title=title)
    table.add_column("bits", justify="right")
    for target in targets:
        table.add_column(f"{target} top-1 / top-5 %", justify="right")
        table.add_column(f"{target} MicroNet", justify="right")
    table.add_row("32 (float)", *[cell for _ in targets for cell in
                                  (f"{_pct(reference['top1'])} / {_pct(reference['top5'])}",
                                   f"{reference['micronet']:.5f}")])
    for width in sorted({r["bits"] for r in rows[1:]}, reverse=True):
        cells = []
        for target in targets:
            row = next((r for r in rows if r["target"] == target and r["bits"] == width), None)
            cells += [f"{_pct(row['top1'])} / {_pct(row['top5'])}", f"{row['micronet']:.5f}"] if row else ["-", "-"]
        table.add_row(str(width), *cells)
    return table


def _print_structured(row: dict) -> None:
    from .console import err

    err.print(f"step {row['step']}: {row['params']:,} params, {row['mflops']:.2f} MFLOPs, "
              f"test {_pct(row['test_acc'])} %", highlight=False)


def structured_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for column in ("step", "params", "MFLOPs", "FLOPs cut", "test acc %", "val acc %", "epochs", "seconds"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["step"]), f"{row['params']:,}", f"{row['mflops']:.2f}",
                      f"{rows[0]['mflops'] / row['mflops']:.2f}x", _pct(row["test_acc"]), _pct(row["val_acc"]),
                      str(row["epochs"]), f"{row['seconds']:.0f}")
    return table


@app.command("distill")
def distill_cmd(
    student: Annotated[str, typer.Option("--student", "-s", help="Zoo model to train (e.g. exp13).")],
    model: ModelOpt = None, dataset: DatasetOpt = None, run: RunOpt = None, checkpoint: CheckpointOpt = None,
    temperature: Annotated[float, typer.Option(min=0.1, help="Softmax temperature of the soft targets.")] = 4.0,
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Weight of the soft (teacher) term.")] = 0.9,
    epochs: Annotated[int, typer.Option(min=1)] = 30, lr: LrOpt = 0.05, images_per_epoch: ImagesOpt = None,
    batch_size: BatchOpt = 128, seed: int = 0, threads: ThreadsOpt = None, data_dir: DataDirOpt = None,
    runs_dir: RunsDirOpt = None, name: NameOpt = None,
) -> None:
    """Knowledge distillation: train STUDENT from scratch on the teacher run's softened outputs + the labels
    (SGD, cosine schedule). The teacher is the run named by --model/--run/--checkpoint."""
    from edgecnn.compress.methods import FinetuneConfig
    from edgecnn.compress.methods.distill import distill

    from .progress import reporter

    _threads(threads)
    parent = _parent(checkpoint, run, model, dataset, runs_dir, data_dir)
    config = FinetuneConfig(epochs=epochs, lr=lr, schedule="cosine", patience=0, min_lr=0.0,
                            images_per_epoch=images_per_epoch, batch_size=batch_size, seed=seed)
    result_run, result = distill(parent, student, temperature=temperature, alpha=alpha, finetune_config=config,
                                 runs_dir=runs_dir, name=name, reporter=reporter(), seed=seed)
    out.print(f"{result_run.path}: {result_run.model_name} distilled from {parent.payload['model']} "
              f"(test {_pct(result['parent_test_acc'])} %): test {_pct(result['test_acc'])} %, "
              f"{result['params']:,} params", highlight=False)


@app.command("qat")
def qat_cmd(
    model: ModelOpt = None, dataset: DatasetOpt = None, run: RunOpt = None, checkpoint: CheckpointOpt = None,
    weight_bits: Annotated[int, typer.Option(min=2, max=8, help="Weight bits (7 = the u8s8 ONNX scheme).")] = 7,
    epochs: Annotated[int, typer.Option(min=1)] = 3, lr: LrOpt = 1e-3, images_per_epoch: ImagesOpt = None,
    batch_size: BatchOpt = 128, seed: int = 0, threads: ThreadsOpt = None, data_dir: DataDirOpt = None,
    runs_dir: RunsDirOpt = None, name: NameOpt = None,
) -> None:
    """Quantization-aware fine-tune (fake-quant weights per channel, activations per tensor): for a run whose
    int8 export loses too much. Export the new run with 'edgecnn export --run ... --int8' as usual."""
    from edgecnn.compress.methods import FinetuneConfig
    from edgecnn.compress.methods.qat import quantization_aware_finetune

    from .progress import reporter

    _threads(threads)
    parent = _parent(checkpoint, run, model, dataset, runs_dir, data_dir)
    config = FinetuneConfig(epochs=epochs, lr=lr, schedule="cosine", patience=0, min_lr=0.0,
                            images_per_epoch=images_per_epoch, batch_size=batch_size, seed=seed)
    result_run, result = quantization_aware_finetune(parent, weight_bits=weight_bits, finetune_config=config,
                                                     runs_dir=runs_dir, name=name, reporter=reporter())
    out.print(f"{result_run.path}: quantization-aware fine-tune of {parent.payload['model']} "
              f"(test {_pct(result['parent_test_acc'])} %): test {_pct(result['test_acc'])} % with weights on the "
              f"{weight_bits}-bit grid; next: edgecnn export --run {result_run.path} --int8", highlight=False)

@app.command("clean-head")
def clean_head_cmd(
    model: ModelOpt = None, dataset: DatasetOpt = None, run: RunOpt = None, checkpoint: CheckpointOpt = None,
    weight_decay: Annotated[float, typer.Option(min=0.0, help="L2 on the refitted head's weights.")] = 1e-4,
    iterations: Annotated[int, typer.Option(min=1, help="L-BFGS iterations.")] = 100,
    threads: ThreadsOpt = None, data_dir: DataDirOpt = None, runs_dir: RunsDirOpt = None, name: NameOpt = None,
) -> None:
    """Deployment head without the paper's ReLU6/ReLU on the logits: drop it and refit the last layer on the
    pooled features of 10,000 training images (one inference pass, then seconds). Export the new run as usual; 'edgecnn export --head clean' does
    both."""
    _threads(threads)
    parent = _parent(checkpoint, run, model, dataset, runs_dir, data_dir)
    from edgecnn.compress.methods.head import clean_head_with_progress

    from .progress import RichProgress

    result_run, result = clean_head_with_progress(parent, runs_dir, name, RichProgress(), weight_decay=weight_decay,
                                                  iterations=iterations)
    out.print(f"{result_run.path}: {parent.payload['model']} with a clean head: test {_pct(result['parent_test_acc'])}"
              f" % -> {_pct(result['test_acc'])} % (val {_pct(result['val_acc_faithful'])} -> "
              f"{_pct(result['val_acc_clean'])} %); next: edgecnn export --run {result_run.path}", highlight=False)


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
