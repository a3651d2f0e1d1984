"""Training recipes: named sets of hyper-parameters. CLI options override any field.

paper1 and paper2 reproduce the two generations of the authors' code (docs/paper-spec.md section 5); fast is ours, for
a CPU budget; micronet is our reading of the MicroNet-challenge write-up (Adam + cosine + mixup/cutmix), which
gives no exact values.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecnn.errors import UnknownNameError


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    epochs: int
    batch_size: int
    optimizer: str  # "sgd" | "adamw"
    lr: float  # peak learning rate
    schedule: str  # "onecycle" (per step) | "cosine" (per step) | "plateau" (per epoch, on the training loss)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    decay_norm_and_bias: bool = True  # the paper decays every parameter, BN and biases included
    pct_start: float = 0.1  # OneCycle warm-up fraction
    plateau_patience: int = 5
    min_lr: float = 1e-5
    early_stop: int = 0  # stop when the training loss has not improved for this many epochs (0 = never)
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha) mixing; 0 = off
    cutmix: float = 0.0
    augment: bool = True  # random crop (4 px padding) + horizontal flip


RECIPES = {r.name: r for r in (
    Recipe("paper1", "P1 code: SGD 0.01, ReduceLROnPlateau + early stopping on the training loss",
           epochs=200, batch_size=128, optimizer="sgd", lr=0.01, schedule="plateau", weight_decay=5e-4,
           early_stop=10),
    Recipe("paper2", "P2 code: SGD, OneCycle max_lr 0.0125, weight decay 2e-5, 150 epochs",
           epochs=150, batch_size=128, optimizer="sgd", lr=0.0125, schedule="onecycle", weight_decay=2e-5),
    Recipe("fast", "short CPU schedule: SGD+Nesterov, OneCycle 0.1, label smoothing 0.1, no decay on BN/bias",
           epochs=8, batch_size=64, optimizer="sgd", lr=0.1, schedule="onecycle", nesterov=True,
           weight_decay=5e-4, decay_norm_and_bias=False, pct_start=0.2, label_smoothing=0.1),
    Recipe("micronet", "MicroNet write-up: AdamW + cosine, mixup (0.2) or cutmix (1.0) on every batch",
           epochs=100, batch_size=128, optimizer="adamw", lr=2e-3, schedule="cosine", weight_decay=0.05,
           decay_norm_and_bias=False, mixup=0.2, cutmix=1.0),
)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UnknownNameError("recipe", name, RECIPES)
    return RECIPES[name]
