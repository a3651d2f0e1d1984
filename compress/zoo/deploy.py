"""Deploy-time rewrites that span blocks (those inside one block are the block's own `deploy()` methods).

`push_trunk_shifts`: in a residual network whose blocks end in a folded ghost module without an activation (the
ghost bottleneck's project module), that module's BatchNorm shift is a constant per channel added to the trunk.
It does not need an operator of its own: taken off, it is owed along the trunk (an identity shortcut passes the
debt on, the next block adds its own) and paid by whatever reads the trunk next, all of which are 1x1 convs or
linear layers, with no padding for a constant to leak through: the next block's first conv and its projection
shortcut (each adds `W @ shift` to its bias, so its own output is exact again) and the head. Exact algebra; the pass
changes nothing unless every block and the head can take part.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import RemovedBlock, Residual
from ..layers.ghost import FoldedGhost
from .builder import ZooModel


def _first_linear(module: nn.Module) -> nn.Module | None:
    """The first layer `module` applies to its input, if it is one that can absorb a constant input shift: a 1x1
    conv without padding, a linear layer (after pooling, which keeps a constant), or a folded ghost module's
    primary conv."""
    if isinstance(module, FoldedGhost):
        return _first_linear(module.conv)
    if isinstance(module, nn.Conv2d):
        return module if module.kernel_size == (1, 1) and module.padding == (0, 0) else None
    if isinstance(module, nn.Linear):
        return module
    if isinstance(module, nn.Sequential) and len(module):
        first = module[0]
        if isinstance(first, (nn.AdaptiveAvgPool2d, nn.Flatten)):  # a constant stays the same constant
            return _first_linear(nn.Sequential(*list(module)[1:]))
        return _first_linear(first)
    return None


@torch.no_grad()
def _absorb(layer: nn.Module, shift: torch.Tensor) -> None:
    """The trunk now holds x - shift (the shift was taken off upstream): make `layer` compute on it what it computed
    on x, by adding `W @ shift` to its bias (shift: one value per input channel)."""
    weight = layer.weight.double()
    if isinstance(layer, nn.Conv2d):
        per_in = layer.in_channels // layer.groups
        per_out = layer.out_channels // layer.groups
        grouped_shift = shift.view(layer.groups, per_in)
        delta = torch.cat([weight[g * per_out:(g + 1) * per_out, :, 0, 0] @ grouped_shift[g]
                           for g in range(layer.groups)])
    else:
        delta = weight @ shift
    bias = layer.bias.double() if layer.bias is not None else torch.zeros(len(delta), dtype=torch.float64)
    layer.bias = nn.Parameter((bias + delta).to(layer.weight.dtype))


def _blocks(model: nn.Module) -> list[nn.Module] | None:
    if not isinstance(model, ZooModel) or "head" not in model._modules:
        return None
    stages = [module for name, module in model.named_children() if name.startswith("layer")]
    return [block for stage in stages for block in stage] if stages else None


def _takes_part(block: nn.Module) -> bool:
    if isinstance(block, RemovedBlock):
        return isinstance(block.act, nn.Identity)
    return (isinstance(block, Residual) and isinstance(block.act, nn.Identity) and isinstance(block.body, nn.Sequential)
            and _first_linear(block.body[0]) is not None
            and (isinstance(block.shortcut, nn.Identity) or _first_linear(block.shortcut) is not None))


def push_trunk_shifts(model: nn.Module) -> int:
    """Move every releasable block-output shift onto the trunk and into its readers, in place (see the module
    doc); returns how many blocks gave up their shift operator."""
    blocks = _blocks(model)
    if not blocks or not all(_takes_part(b) for b in blocks) or _first_linear(model.head) is None:
        return 0
    shift, moved = None, 0
    for block in blocks:
        if isinstance(block, RemovedBlock):
            continue  # act(x) with the identity: the trunk passes through unchanged
        if shift is not None:
            _absorb(_first_linear(block.body[0]), shift)
            if isinstance(block.shortcut, nn.Identity):
                carried = shift
            else:
                _absorb(_first_linear(block.shortcut), shift)
                carried = None
        else:
            carried = None
        last = block.body[-1]
        released = last.release_shift() if isinstance(last, FoldedGhost) else None
        moved += released is not None
        if released is not None and carried is not None:
            shift = carried + released
        else:
            shift = released if released is not None else carried
    if shift is not None:
        _absorb(_first_linear(model.head), shift)
    return moved
