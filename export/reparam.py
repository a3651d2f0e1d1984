"""Export-time re-parameterisation: the same function with other operators, applied to a copy of the trained model
just before it is converted (the run and the zoo stay as they are). Every rewrite is exact algebra and lives with
the blocks it rewrites: inside one block as its `deploy(form)` method (timm's reparameterizable blocks carry
`fuse()` the same way), across blocks in compress/zoo/deploy.py; this module only walks the model and asks.

Graph forms (export/options.py FORMS), each a file of its own, chosen per target by measurement (docs/export.md):

- **op-minimal**: the fewest operators. Ghost modules become two convs each ("depthwise": no concat, no BatchNorm,
  shuffles absorbed into dense primaries), for int8 always and for fp32 where a module has a channel shuffle
  ("auto"), at the price of more multiply-adds. What wins on a host that is bound by per-operator cost.
- **mac-preserving**: the fewest multiply-adds. Ghost modules keep their grouped primary conv, the BatchNorm
  folded ("fold"), each shuffle one layout op; the project modules' shifts go onto the residual trunk.
- **layout-free**: as mac-preserving, but a shuffled grouped primary becomes one dense conv in shuffled order
  ("fold-dense"): no layout op at all, the primary conv's multiply-adds times its groups.
- **naive**: the model as trained, converted as it is (the baseline every form is compared with).

TFLite files additionally get channel-last shuffles (`channel_last`), one transpose each instead of three.

Models from outside the zoo (timm, a user's factory) have none of the zoo's blocks, so every form is the same graph
and each precision exports once: `generic_rewrite` applies what is exact for any network, timm's own deploy hooks
(`timm.utils.reparameterize_model`: RepVGG/MobileOne branches) for timm models, then every BatchNorm folded into
the conv before it (computed in float64).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgecnn.compress.layers import ChannelShuffle, GhostModule
from edgecnn.compress.layers.shuffle import ChannelLastShuffle
from edgecnn.compress.fold import fold_batchnorms
from edgecnn.compress.zoo.deploy import push_trunk_shifts
from edgecnn.errors import EdgecnnError

from .options import GHOST_REWRITES

#: the ghost rewrite of each form, per precision (op-minimal's fp32 default is "auto": a float runtime gains
#: nothing from the copied primary conv where no shuffle is absorbed)
FORM_GHOST = {"mac-preserving": {"fp32": "fold", "int8": "fold"}, "layout-free": {"fp32": "fold-dense", "int8": "fold-dense"},
              "naive": {"fp32": "none", "int8": "none"}}


def check_ghost_rewrite(value: str, label: str = "the ghost rewrite") -> None:
    if value not in GHOST_REWRITES:
        raise EdgecnnError(f"{label} must be one of {', '.join(GHOST_REWRITES)}, not {value!r}")


def form_rewrite(form: str, precision: str, op_minimal: dict[str, str]) -> str:
    """The ghost rewrite a form uses for a precision (`op_minimal`: the export's --ghost-fp32/--ghost-int8)."""
    return op_minimal[precision] if form == "op-minimal" else FORM_GHOST[form][precision]


def reparameterize(model: nn.Module, example: torch.Tensor | None = None, ghost: str = "fold") -> tuple[nn.Module, dict]:
    """A copy of `model` (eval mode) with every block that has a `deploy(form)` rewritten as `ghost` says
    (GHOST_REWRITES); returns (copy, counts). Blocks the rewrite does not apply to are kept and counted. (`example`
    is accepted for callers that pass one; no rewrite needs the input size.)"""
    check_ghost_rewrite(ghost)
    model = copy.deepcopy(model).eval()
    counts = {"ghost": ghost, "ghost_rewritten": 0, "ghost_kept": 0}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, GhostModule):
                continue
            form = {"auto": "depthwise" if child.shuffled else None, "none": None}.get(ghost, ghost)
            rewritten = child.deploy(form) if form else None
            counts["ghost_rewritten" if rewritten is not None else "ghost_kept"] += 1
            if rewritten is not None:
                setattr(parent, name, rewritten)
    if ghost in ("fold", "fold-dense"):
        counts["shifts_moved"] = push_trunk_shifts(model)
    return model, counts


def generic_rewrite(model: nn.Module, timm_hooks: bool = False) -> tuple[nn.Module, dict]:
    """A copy of a non-zoo model (eval mode) with timm's deploy hooks applied (`timm_hooks`) and its BatchNorms
    folded; returns (copy, counts). A network torch.fx cannot trace keeps its BatchNorms, and the counts say why."""
    model = copy.deepcopy(model).eval()
    counts: dict = {"ghost": "none", "batchnorm_folded": 0}
    if timm_hooks:
        from timm.utils.model import reparameterize_model

        model = reparameterize_model(model, inplace=True).eval()
        counts["timm_reparameterized"] = True
    model, folds = fold_batchnorms(model)
    if isinstance(folds, str):
        counts["batchnorm_kept"] = folds
    else:
        counts["batchnorm_folded"] = folds
    return model, counts


def channel_last(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of `model` whose channel shuffles are written for a channel-last graph (see ChannelLastShuffle);
    returns (copy, shuffles rewritten). Exact: the same permutation."""
    model = copy.deepcopy(model).eval()
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ChannelShuffle) and not isinstance(child, ChannelLastShuffle):
                rewritten = child.deploy("channel-last")
                if rewritten is not None:
                    setattr(parent, name, rewritten)
                    count += 1
    return model, count
