"""A model from a checkpoint's record: the zoo entry, then its shape (structurally pruned layers, blocks removed by
depth pruning), its weights and its head. The one place that knows how each compression method changes a model,
so that export, bench and evaluation rebuild any run the same way; and the lookups of runs by zoo name.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from edgecnn.errors import EdgecnnError
from edgecnn.runs import Run, list_runs, runs_root

from .layers import RemovedBlock, Residual
from .zoo import get_model, resolve


def build_from_checkpoint(payload: dict, *, model: str | None = None, num_classes: int | None = None,
                          in_chans: int | None = None, source: str = "checkpoint") -> torch.nn.Module:
    """Rebuild the zoo model a checkpoint was trained as, refusing a different model or class count."""
    if model is not None and resolve(model) != payload["model"]:
        raise EdgecnnError(f"{source} holds {payload['model']}, not {resolve(model)}")
    for name, wanted in (("num_classes", num_classes), ("in_chans", in_chans)):
        if wanted is not None and payload[name] != wanted:
            raise EdgecnnError(f"{source} was trained with {name}={payload[name]}, not {wanted}")
    net = get_model(payload["model"], payload["num_classes"], payload["in_chans"])
    try:
        if payload.get("removed_blocks"):  # depth-pruned (compress/methods/depth.py): take the blocks out first
            remove_blocks(net, payload["removed_blocks"])
        if "structure" in payload:  # structurally pruned: give each layer its saved shape first
            apply_structure(net, payload["structure"], payload["state_dict"])
        net.load_state_dict(payload["state_dict"])
    except (RuntimeError, AttributeError) as error:
        raise EdgecnnError(f"{source} does not fit {payload['model']}: {str(error).splitlines()[0]}") from error
    if payload.get("head") == "clean":  # compress/methods/head.py: the logit activation was dropped and refitted
        strip_logit_activation(net)
    return net


_SHAPE_ATTRS = {torch.nn.Conv2d: ("in_channels", "out_channels", "groups"), torch.nn.Linear: ("in_features", "out_features"),
                torch.nn.BatchNorm2d: ("num_features",)}


def structure_of(model: torch.nn.Module) -> dict[str, dict[str, int]]:
    """The channel counts of every conv, linear and BatchNorm layer: what a structurally pruned model needs, beside
    its state_dict, to be rebuilt from the zoo definition (plain ints, so checkpoints stay weights_only). Subclasses
    count (timm's BatchNormAct2d is a BatchNorm2d whose width the export's rewrites read)."""
    return {name: {attr: int(getattr(module, attr)) for attr in attrs} for name, module in model.named_modules()
            for kind, attrs in _SHAPE_ATTRS.items() if isinstance(module, kind)}


def apply_structure(net: torch.nn.Module, structure: dict, state_dict: dict) -> None:
    """Resize `net`'s layers to a pruned model's channel counts; the tensors get their shapes from `state_dict`."""
    for name, attrs in structure.items():
        module = net.get_submodule(name)
        for attr, value in attrs.items():
            setattr(module, attr, value)
    for key, value in state_dict.items():
        owner, _, leaf = key.rpartition(".")
        module = net.get_submodule(owner)
        if leaf in module._parameters and module._parameters[leaf].shape != value.shape:
            module._parameters[leaf] = torch.nn.Parameter(torch.empty_like(value))
        elif leaf in module._buffers and module._buffers[leaf] is not None and module._buffers[leaf].shape != value.shape:
            module._buffers[leaf] = torch.empty_like(value)
    for module in net.modules():  # structures recorded before subclasses counted lack timm's BatchNormAct2d widths
        if isinstance(module, torch.nn.BatchNorm2d) and module.running_mean is not None:
            module.num_features = module.running_mean.shape[0]


# ------------------------------------------------------------------------------- depth pruning's blocks

def activation_left(block: nn.Module) -> nn.Module | None:
    """What stays of a removable block (its post-add activation), or None when the block cannot go (it changes
    the shape: a projection shortcut, a stride, a width change)."""
    if isinstance(block, Residual) and isinstance(block.shortcut, nn.Identity):
        return block.act
    if isinstance(block, (BasicBlock, Bottleneck)) and block.downsample is None:  # torchvision's: relu(body(x) + x)
        return block.relu
    return _timm_activation_left(block) if "timm" in sys.modules else None  # no timm imported: no timm blocks


def _timm_activation_left(block: nn.Module) -> nn.Module | None:
    """timm's residual blocks: a ResNet block is act(body(x) + x) without a downsample; the EfficientNet family's
    (MobileNetV3, EfficientNet) and GhostNet's add an identity shortcut last, with no activation after it."""
    from timm.models import _efficientnet_blocks as efficientnet
    from timm.models import ghostnet, resnet

    if isinstance(block, resnet.BasicBlock) and block.downsample is None:
        return block.act2
    if isinstance(block, resnet.Bottleneck) and block.downsample is None:
        return block.act3
    skips = (efficientnet.DepthwiseSeparableConv, efficientnet.InvertedResidual, efficientnet.EdgeResidual,
             efficientnet.UniversalInvertedResidual)
    if isinstance(block, skips) and block.has_skip:
        return nn.Identity()
    if isinstance(block, ghostnet.GhostBottleneck) and isinstance(block.shortcut, nn.Sequential) \
            and len(block.shortcut) == 0:  # an empty Sequential: the identity shortcut
        return nn.Identity()
    return None


def removable_blocks(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if activation_left(module) is not None]


def removed_blocks(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, RemovedBlock)]


def replace_module(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put `new` where the submodule `name` was; returns the module it replaced."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


def remove_blocks(model: nn.Module, names: list[str]) -> nn.Module:
    """Replace the named blocks by what is left of them (in place); returns the model."""
    for name in names:
        left = activation_left(model.get_submodule(name))
        if left is None:
            raise EdgecnnError(f"block {name!r} cannot be removed (it is not a residual block with an identity "
                               "shortcut)")
        replace_module(model, name, RemovedBlock(left))
    return model



# ------------------------------------------------------------------------------- the paper's heads

ACTIVATIONS = (nn.ReLU, nn.ReLU6)
NOT_A_PAPER_HEAD = ("this model's head has no activation on its logits (conv 1x1 [BN] ReLU/ReLU6, then the average "
                    "pool); --head clean is for the paper's conv-only heads")


def conv_head(model: nn.Module) -> tuple[nn.Sequential, nn.Conv2d, nn.BatchNorm2d | None]:
    """(last conv block, its 1x1 conv, its BatchNorm) of a conv-only head: conv 1x1 [BN] [act] -> average pool."""
    head = getattr(model, "head", None)
    block = head[0] if isinstance(head, nn.Sequential) and len(head) and isinstance(head[0], nn.Sequential) else None
    if block is None or not isinstance(block[0], nn.Conv2d) or block[0].kernel_size != (1, 1) \
            or not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in head):
        raise EdgecnnError(NOT_A_PAPER_HEAD)
    return block, block[0], next((m for m in block if isinstance(m, nn.BatchNorm2d)), None)


def logit_activation(model: nn.Module) -> tuple[nn.Sequential, int, nn.Conv2d, nn.BatchNorm2d | None]:
    """(block, index of the activation in it, its conv, its BatchNorm) of a conv-only head ending in ReLU/ReLU6."""
    block, conv, bn = conv_head(model)
    if not isinstance(block[-1], ACTIVATIONS):
        raise EdgecnnError(NOT_A_PAPER_HEAD)
    if bn is None and conv.bias is None:
        raise EdgecnnError("a clean head needs a BatchNorm or a conv bias to carry its bias")
    return block, len(block) - 1, conv, bn


def strip_logit_activation(model: nn.Module) -> nn.Module:
    """Replace the head's logit activation by Identity, in place (what a checkpoint with "head": "clean" needs)."""
    block, index, _, _ = logit_activation(model)
    block[index] = nn.Identity()
    return model


# ------------------------------------------------------------------------------- runs by zoo name

def find_run(model: str, dataset: str | None, root: str | os.PathLike[str] | None = None) -> Run:
    """The newest finished run of `model` on `dataset` (any dataset when None); a one-line error saying how to
    train one otherwise."""
    from edgecnn.data import dataset_info

    name, data = resolve(model), dataset_info(dataset).name if dataset else None
    # compressed runs (with lineage) are never picked implicitly: a user names them with --run
    matches = [r for r in list_runs(root) if r.finished and r.config["model"] == name and "lineage" not in r.config
               and (data is None or r.config["dataset"] == data)]
    if not matches:
        raise EdgecnnError(f"no finished run of {name}{f' on {data}' if data else ''} in {runs_root(root)}; train "
                           f"one with 'edgecnn train --model {name} --dataset {data or 'fashion-mnist'}'")
    return matches[-1]


def resolve_checkpoint(*, checkpoint: str | None = None, run: str | None = None, model: str | None = None,
                       dataset: str | None = None, root: str | None = None, which: str = "best") -> Path:
    """--checkpoint PATH | --run DIR | --model M --dataset D (newest finished run) -> checkpoint path."""
    if checkpoint:
        return Path(checkpoint)
    if run:
        if not (Path(run) / "config.json").is_file():
            raise EdgecnnError(f"{run} is not a run directory (no config.json)")
        found = Run(Path(run))
        lineage = found.config.get("lineage") or {}
        if lineage.get("method") == "bits":
            raise EdgecnnError(f"{run} is a simulated bit-width sweep (edgecnn compress bits), not a model; use its "
                               f"parent run {lineage.get('parent')}")
        return found.checkpoint(which)
    if model:
        return find_run(model, dataset, root).checkpoint(which)
    raise EdgecnnError("say which model: --checkpoint PATH, --run DIR, or --model NAME --dataset NAME")
