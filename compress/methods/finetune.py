"""One fine-tuning loop for every compression method (single process; pruning steps, distillation, QAT).

The defaults are the paper's pruning fine-tune (§6 of the spec): SGD lr 1e-4, momentum 0.9, weight decay 5e-4,
ReduceLROnPlateau (patience 5, min lr 1e-5) and early stopping (patience 5) both on the *training* loss, at most
50 epochs. ``images_per_epoch`` trains each epoch on a fresh seeded subset, for CPU budgets; the best epoch (by
validation accuracy, never the test split) is kept.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgecnn.compress.train.augment import EpochAugment
from edgecnn.compress.train.loop import Reporter, evaluate
from edgecnn.data import Dataset, normalize
from edgecnn.errors import EdgecnnError

# loss(logits, normalised images, labels) -> scalar; distillation passes the images to its teacher
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class FinetuneConfig:
    epochs: int = 50
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    schedule: str = "plateau"  # plateau (the paper's, on train loss) or cosine (distillation from scratch)
    patience: int = 5  # early stopping on the training loss; 0 = off
    plateau_patience: int = 5
    min_lr: float = 1e-5
    augment: bool = True
    images_per_epoch: int | None = None  # None: the whole training split every epoch
    seed: int = 0

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise EdgecnnError("fine-tuning needs epochs >= 1, batch size >= 1 and a positive learning rate")
        if self.schedule not in ("plateau", "cosine"):
            raise EdgecnnError(f"unknown schedule {self.schedule!r}; use plateau or cosine")


def cross_entropy(logits: torch.Tensor, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def finetune(model: nn.Module, data: Dataset, config: FinetuneConfig, *, loss_fn: LossFn = cross_entropy,
             reporter: Reporter | None = None, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Train `model` in place; leave it at its best-validation epoch. Returns one record per epoch."""
    config.check()
    reporter = reporter or Reporter()
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    other = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                                 {"params": other, "weight_decay": 0.0}], lr=config.lr, momentum=config.momentum)
    count = min(config.images_per_epoch or len(data.train), len(data.train))
    steps = -(-count // config.batch_size)
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps,
                                                               eta_min=config.min_lr)
    else:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=config.plateau_patience,
                                                               min_lr=config.min_lr)
    best_acc, best_state, history, stale = -1.0, None, [], 0
    for epoch in range(config.epochs):
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        order = torch.randperm(len(data.train), generator=generator)[:count]
        augment = EpochAugment(len(data.train), config.seed, epoch) if config.augment else None
        model.train()
        loss_sum = correct = seen = 0.0
        started = time.perf_counter()
        for step, index in enumerate(order.split(config.batch_size)):
            x = data.train.images[index]
            x = normalize(augment(x, index) if augment else x, data.mean, data.std)
            y = data.train.labels[index]
            logits = model(x)
            loss = loss_fn(logits, x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if config.schedule == "cosine":
                scheduler.step()
            loss_sum += loss.item() * len(index)
            correct += float((logits.argmax(1) == y).sum())
            seen += len(index)
            reporter.batch(epoch, step, loss_sum / seen, correct / seen, seen / (time.perf_counter() - started))
        seconds = time.perf_counter() - started
        val_loss, val_correct, val_n, _ = evaluate(model, data.val, data.mean, data.std)
        train_loss = loss_sum / seen
        if config.schedule == "plateau":
            scheduler.step(train_loss)
        stale = 0 if not history or train_loss < min(r["train_loss"] for r in history) else stale + 1
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
                  "train_acc": correct / seen, "val_loss": val_loss / val_n, "val_acc": val_correct / val_n,
                  "images_per_s": seen / seconds, "seconds": seconds}
        history.append(record)
        if record["val_acc"] > best_acc:
            best_acc, best_state = record["val_acc"], copy.deepcopy(model.state_dict())
        reporter.epoch(record)
        if on_epoch:
            on_epoch(record)
        if config.patience and stale >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return history
