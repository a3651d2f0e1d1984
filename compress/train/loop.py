"""The training loop: one process, or one per rank under torchrun (DistributedDataParallel), resumable.

Determinism: data order comes from DistributedSampler seeded with (seed, epoch), each sample's crop/flip from
(seed, epoch, sample index), and the global RNG (dropout, mixup) is re-seeded at every epoch start. A run killed at
any point and resumed from ``last.pt`` therefore ends, on CPU, with the same weights as an uninterrupted run; and a
single process accumulating gradients over W micro-batches computes what W DDP ranks compute (rank r's shard of a
global batch is micro-batch r), which is how the DDP test checks itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

import edgecnn
from edgecnn.compress.layers import Discarded
from edgecnn.compress.zoo import count_mflops, count_params, get_model, model_slug, model_source, resolve
from edgecnn.data import Dataset, Split, load_dataset, normalize
from edgecnn.errors import EdgecnnError
from edgecnn.io import atomic_write_text, folder_lock, remove_stale_temporaries
from edgecnn.malloc import loaded_allocator
from edgecnn.runs import Run, check_run_name, load_checkpoint, runs_root, save_checkpoint

from .augment import EpochAugment, mix
from .recipes import Recipe, get_recipe


@dataclass
class TrainConfig:
    """Everything a run depends on. Fields left None take the recipe's value."""

    model: str  # a zoo name, timm:NAME or a user's module:factory / file.py:factory (compress/zoo/external.py)
    dataset: str
    recipe: str = "fast"
    epochs: int | None = None
    batch_size: int | None = None  # global batch (split across ranks and micro-batches)
    lr: float | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    augment: bool | None = None
    seed: int = 0
    data_dir: str | None = None
    download: bool = False
    verify: bool = True  # False: a CIFAR folder that is the user's own copy, without the md5 step (--no-verify)
    in_chans: int | None = None  # None: the dataset's own
    device: str = "auto"
    threads: int | None = None
    channels_last: bool | None = None  # None: on for CUDA, off for CPU (measured slower there)
    compile: bool = False
    grad_accum: int = 1
    deterministic: bool = True
    runs_dir: str | None = None
    name: str | None = None
    pretrained: str | None = None  # a timm model's starting weights: a local file, loaded by timm
    resolved: dict = field(default_factory=dict)  # the recipe after overrides, filled by resolve_config

    def recipe_values(self) -> Recipe:
        base = get_recipe(self.recipe)
        overrides = {f.name: getattr(self, f.name) for f in fields(Recipe)
                     if hasattr(self, f.name) and f.name != "name" and getattr(self, f.name) is not None}
        return replace(base, **overrides)


@dataclass
class Reporter:
    """Progress callbacks; the CLI provides rich bars on a TTY and log lines otherwise."""

    def start(self, run: Path, epochs: int, steps: int, first_epoch: int) -> None: ...
    def batch(self, epoch: int, step: int, loss: float, acc: float, images_per_s: float) -> None: ...
    def epoch(self, record: dict) -> None: ...
    def finish(self, result: dict) -> None: ...


class _Dist:
    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.main = self.rank == 0

    def init(self, device: torch.device) -> None:
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def sum(self, *values: float) -> list[float]:
        if self.world == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _device(name: str, ddp: _Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise EdgecnnError("--device cuda: no CUDA device is available")
        return torch.device("cuda", ddp.local_rank)
    if name != "cpu":
        raise EdgecnnError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device("cpu")


def _optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for param in model.parameters():
        (decay if recipe.decay_norm_and_bias or param.ndim > 1 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr)
    raise EdgecnnError(f"unknown optimizer {recipe.optimizer!r}")


def _scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int):
    if recipe.schedule == "onecycle":
        warmup = recipe.pct_start
        if warmup * total_steps == 1:  # OneCycleLR divides by the warm-up's steps less one (fast: 1 epoch of 5 steps)
            warmup = min(0.9, 1.5 / total_steps)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total_steps,
                                                   pct_start=warmup)
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=recipe.min_lr)
    if recipe.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", patience=recipe.plateau_patience,
                                                          min_lr=recipe.min_lr)
    raise EdgecnnError(f"unknown schedule {recipe.schedule!r}")


TOP_K = 5


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, mean, std, *, batch_size: int = 500, device: torch.device | None = None,
             shard: tuple[int, int] = (0, 1), channels_last: bool = False) -> tuple[float, int, int]:
    """(summed cross-entropy, top-1 correct, count, top-5 correct) over this process's contiguous shard of `split`
    (top-5: the label among the five highest logits; with fewer than five classes, among all of them)."""
    device = device or torch.device("cpu")
    was_training = model.training
    model.eval()
    index = torch.arange(len(split)).tensor_split(shard[1])[shard[0]]
    loss_sum, correct, correct5 = 0.0, 0, 0
    for chunk in index.split(batch_size):
        x = normalize(split.images[chunk].to(device), mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = split.labels[chunk].to(device)
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        best = logits.topk(min(TOP_K, logits.shape[1]), dim=1).indices
        correct += int((best[:, 0] == y).sum())
        correct5 += int((best == y[:, None]).any(1).sum())
    model.train(was_training)
    return loss_sum, correct, len(index), correct5


def test_scores(model: nn.Module, split: Split, mean, std) -> dict:
    """{"top1", "top5", "images"} of `model` on `split`."""
    _, correct, count, correct5 = evaluate(model, split, mean, std)
    return {"top1": correct / max(count, 1), "top5": correct5 / max(count, 1), "images": count}


def _run_name(config: TrainConfig) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    if config.name:
        return check_run_name(config.name)
    return f"{model_slug(config.model)}-{config.dataset}-{config.recipe}-s{config.seed}-{stamp}"


def _write_metrics(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))


def train(config: TrainConfig | None = None, *, resume: str | os.PathLike[str] | None = None,
          reporter: Reporter | None = None, on_batch: Callable[[int, int], None] | None = None) -> Run:
    """Train (or resume) a run and return it. `on_batch(epoch, step)` is a hook for tests and tools."""
    with contextlib.ExitStack() as locks:  # rank 0 holds its run folder's lock until the run ends
        return _locked_train(config, resume, reporter or Reporter(), on_batch, locks)


def _locked_train(config: TrainConfig | None, resume, reporter: Reporter, on_batch, locks: contextlib.ExitStack) -> Run:
    ddp = _Dist()
    state = None
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.json").is_file():
            raise EdgecnnError(f"cannot resume {run_dir}: not a run directory (no config.json)")
        if ddp.main:
            locks.enter_context(folder_lock(run_dir, "run"))
            remove_stale_temporaries(run_dir)
        try:
            saved = Run(run_dir).config["train"]
            config = TrainConfig(**{k: v for k, v in saved.items() if k != "resolved"})
        except (KeyError, TypeError) as error:
            raise EdgecnnError(f"cannot resume {run_dir}: its config.json is not an edgecnn run's") from error
        if (run_dir / "last.pt").is_file():
            state = load_checkpoint(run_dir / "last.pt")
        if (run_dir / "result.json").is_file():
            raise EdgecnnError(f"{run_dir} has already finished")
    elif config is None:
        raise ValueError("train() needs a config or resume=")
    recipe = config.recipe_values()
    config.model = resolve(config.model)
    device = _device(config.device, ddp)
    ddp.init(device)
    try:
        return _train(config, recipe, device, ddp, reporter, on_batch, state, Path(resume) if resume else None,
                      locks)
    finally:
        ddp.close()


def _train(config: TrainConfig, recipe: Recipe, device: torch.device, ddp: _Dist, reporter: Reporter,
           on_batch, state: dict | None, run_dir: Path | None, locks: contextlib.ExitStack) -> Run:
    if device.type == "cpu":
        # denormal floats (tiny gradients late in training) run far slower on x86; flushing them changes no result
        torch.set_flush_denormal(True)
        if config.threads:
            torch.set_num_threads(config.threads)
    if config.deterministic and device.type == "cpu":
        torch.use_deterministic_algorithms(True)
        # Deterministic mode also fills every new tensor with NaN, a debugging aid that changes no correct result
        # but cost exp13's CPU step ~20 % (benchmarks/train_throughput.py); the resume test still checks equality.
        torch.utils.deterministic.fill_uninitialized_memory = False
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not config.deterministic
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    per_rank = recipe.batch_size // ddp.world
    micro = per_rank // config.grad_accum
    if micro < 1 or recipe.batch_size % (ddp.world * config.grad_accum):
        raise EdgecnnError(f"batch size {recipe.batch_size} must divide into {ddp.world} ranks x "
                           f"{config.grad_accum} micro-batches")

    data: Dataset = load_dataset(config.dataset, config.data_dir, download=config.download, in_chans=config.in_chans,
                                 verify=config.verify)
    config.in_chans = data.in_chans
    num_classes = data.info.num_classes
    torch.manual_seed(config.seed)
    model = get_model(config.model, num_classes, data.in_chans, pretrained=None if state else config.pretrained)
    source = model_source(config.model, num_classes, data.in_chans)
    params, mflops = count_params(model), count_mflops(model, data.in_chans)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(model, recipe)
    sampler = DistributedSampler(range(len(data.train)), num_replicas=ddp.world, rank=ddp.rank, shuffle=True,
                                 seed=config.seed)
    steps = math.ceil(len(sampler) / per_rank)
    scheduler = _scheduler(optimizer, recipe, recipe.epochs * steps)
    history: list[dict] = []
    best = {"val_acc": -1.0, "epoch": 0}
    first_epoch = 0
    if state is not None:
        if state["model"] != config.model or state["in_chans"] != data.in_chans or state["num_classes"] != num_classes:
            raise EdgecnnError(f"{run_dir}/last.pt does not belong to this run's model and data")
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best, first_epoch = list(state["history"]), dict(state["best"]), state["epoch"]

    if ddp.main:
        if run_dir is None:
            run_dir = runs_root(config.runs_dir) / _run_name(config)
            if run_dir.exists():
                raise EdgecnnError(f"run directory {run_dir} already exists; choose another --name")
            locks.enter_context(folder_lock(run_dir, "run"))
        config.resolved = asdict(recipe)
        run_config = {"model": config.model, "dataset": data.info.name, "recipe": recipe.name,
                      "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "world_size": ddp.world,
                      "device": device.type, "params": params, "mflops": mflops, "edgecnn": edgecnn.__version__,
                      "torch": torch.__version__, "allocator": loaded_allocator(), "data": data.describe(),
                      "model_source": source, "train": asdict(config)}
        if not (run_dir / "config.json").is_file():
            atomic_write_text(run_dir / "config.json", json.dumps(run_config, indent=2))
    has_dead = any(isinstance(m, Discarded) for m in model.modules())
    net: nn.Module = model
    if ddp.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                  find_unused_parameters=has_dead)
    # dynamic=False: one graph per batch shape (the full batch, and the epoch's last partial one). With dynamic
    # shapes, torch 2.14's inductor failed on exp13 under torchrun on CPU ("cannot determine truth value of
    # Relational: 64*s0*s53 < 64") at the first step; static shapes cost one extra compile for the last batch.
    step_fn = torch.compile(net, dynamic=False) if config.compile else net
    # bf16 autocast on CUDA; plain fp32 on CPU: even on an AMX host bf16 was slower here (oneDNN's bf16 depthwise
    # backward takes twice the fp32 time; benchmarks/train_op_profile.py --bf16)
    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    images = data.train.images.pin_memory() if device.type == "cuda" else data.train.images
    if ddp.main:
        reporter.start(run_dir, recipe.epochs, steps, first_epoch)

    stale_epochs = 0 if not history else history[-1].get("stale_epochs", 0)
    for epoch in range(first_epoch, recipe.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        augment = EpochAugment(len(data.train), config.seed, epoch) if recipe.augment else None
        torch.manual_seed(config.seed * 7919 + epoch * 104_729 + ddp.rank)
        mixer = torch.Generator().manual_seed(config.seed * 31 + epoch * 1_000_003 + ddp.rank)
        net.train()
        loss_sum = correct = seen = 0.0
        started = time.perf_counter()
        for step, batch_idx in enumerate(order.split(per_rank)):
            optimizer.zero_grad(set_to_none=True)
            parts = [batch_idx[r::config.grad_accum] for r in range(config.grad_accum)]
            for part_no, part in enumerate(parts):
                x = images[part]
                if augment:
                    x = augment(x, part)
                x = normalize(x.to(device, non_blocking=True), data.mean, data.std)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = data.train.labels[part].to(device, non_blocking=True)
                x, target = mix(x, y, num_classes, recipe.mixup, recipe.cutmix, mixer)
                sync = part_no == len(parts) - 1 or ddp.world == 1
                with amp(), (contextlib.nullcontext() if sync else net.no_sync()):
                    logits = step_fn(x)
                    loss = F.cross_entropy(logits.float(), target, label_smoothing=recipe.label_smoothing)
                    (loss * len(part) / len(batch_idx)).backward()
                loss_sum += loss.item() * len(part)
                correct += float((logits.argmax(1) == y).sum())
                seen += len(part)
            optimizer.step()
            if recipe.schedule != "plateau":
                scheduler.step()
            if ddp.main:
                reporter.batch(epoch, step, loss_sum / seen, correct / seen,
                               seen * ddp.world / (time.perf_counter() - started))
            if on_batch:
                on_batch(epoch, step)
        train_time = time.perf_counter() - started
        loss_sum, correct, seen = ddp.sum(loss_sum, correct, seen)
        val_loss, val_correct, val_n, _ = _evaluate_all(model, data, "val", device, ddp, channels_last)
        train_loss = loss_sum / seen
        if recipe.schedule == "plateau":
            scheduler.step(train_loss)
        improved_loss = not history or train_loss < min(r["train_loss"] for r in history)
        stale_epochs = 0 if improved_loss else stale_epochs + 1
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
                  "train_acc": correct / seen, "val_loss": val_loss / val_n, "val_acc": val_correct / val_n,
                  "images_per_s": seen / train_time, "seconds": train_time, "stale_epochs": stale_epochs}
        history.append(record)
        is_best = record["val_acc"] > best["val_acc"]
        if is_best:
            best = {"val_acc": record["val_acc"], "epoch": epoch + 1}
        if ddp.main:
            meta = {"model": config.model, "num_classes": num_classes, "in_chans": data.in_chans,
                    "data": data.describe(), "epoch": epoch + 1, "edgecnn": edgecnn.__version__,
                    "model_source": source}
            weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            if is_best:
                save_checkpoint(run_dir / "best.pt", {**meta, "state_dict": weights, "val_acc": record["val_acc"]})
            save_checkpoint(run_dir / "last.pt", {**meta, "state_dict": weights, "optimizer": optimizer.state_dict(),
                                                  "scheduler": scheduler.state_dict(), "history": history,
                                                  "best": best})
            _write_metrics(run_dir, history)
            reporter.epoch(record)
        if recipe.early_stop and stale_epochs >= recipe.early_stop:
            break

    result = _finish(model, data, run_dir, device, ddp, channels_last, history, best, params, mflops)
    if ddp.main:
        reporter.finish(result)
    if ddp.world > 1:
        run_dir_list = [str(run_dir) if run_dir else None]
        dist.broadcast_object_list(run_dir_list, src=0)
        run_dir = Path(run_dir_list[0])
    return Run(run_dir)


def _evaluate_all(model, data: Dataset, split: str, device, ddp: _Dist, channels_last: bool) -> list[float]:
    """(summed loss, correct, count, top-5 correct) over the whole split: each rank takes its shard, the sums are
    all-reduced."""
    return ddp.sum(*evaluate(model, data.split(split), data.mean, data.std, device=device,
                             shard=(ddp.rank, ddp.world), channels_last=channels_last))


def _finish(model, data: Dataset, run_dir: Path | None, device, ddp: _Dist, channels_last: bool, history, best,
            params: int, mflops: float) -> dict:
    """Test accuracy over every test image, for the last epoch and for the best-validation checkpoint."""
    def test_acc() -> tuple[float, float, float]:
        loss, correct, n, correct5 = _evaluate_all(model, data, "test", device, ddp, channels_last)
        return correct / n, loss / n, correct5 / n

    last_acc, last_loss, _ = test_acc()
    best_payload = None
    if ddp.main:
        best_payload = load_checkpoint(run_dir / "best.pt")["state_dict"]
    if ddp.world > 1:
        holder = [best_payload]
        dist.broadcast_object_list(holder, src=0)
        best_payload = holder[0]
    model.load_state_dict(best_payload)
    best_acc, best_loss, best_top5 = test_acc()
    result = {"status": "finished", "test_acc": best_acc, "test_top5": best_top5, "test_loss": best_loss,
              "test_acc_last": last_acc,
              "test_loss_last": last_loss, "best_epoch": best["epoch"], "best_val_acc": best["val_acc"],
              "epochs": len(history), "params": params, "mflops": mflops,
              "train_seconds": sum(r["seconds"] for r in history),
              "images_per_s": sum(r["images_per_s"] for r in history) / max(len(history), 1),
              "test_images": len(data.test)}
    if ddp.main:
        atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2))
    return result
