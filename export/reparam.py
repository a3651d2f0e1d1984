"""Export-time re-parameterisation: the same function with fewer ops, applied to a copy of the trained model just
before it is converted (the training graph and the faithful zoo variants stay as they are).

The paper's ghost module ends in a BatchNorm over concat([cheap(primary), primary]). Converters fold a BatchNorm
only into the conv right before it, and a concat is in the way, so every ghost module kept a float BatchNorm:
in int8 files, a dequantize -> BatchNorm -> quantize island per module (64 in exp13). Folding it is algebra:

- primary slice (scale a_p, shift b_p) goes into the primary 1x1 conv (through the channel shuffle, whose
  permutation is applied to the affine's channels);
- the cheap depthwise conv then reads a_p*y + b_p instead of y, so its weights are divided by a_p and the shift
  is compensated: depthwise(b_p) over the zero-padded map is a constant in the interior (into the bias) and
  differs only on the border, where fewer taps are inside; that border remainder is a constant map added after
  the conv (exactly zero, and absent, when b_p is zero);
- cheap slice (a_c, b_c) goes into the depthwise conv's weights and bias.

A module whose primary scale is too close to zero to divide by safely keeps its BatchNorm (reported by the
caller). tests/export/test_reparam.py checks every zoo variant's logits against the original to 1e-5.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from edgecnn.compress.layers.ghost import GhostModule
from edgecnn.compress.layers.shuffle import ChannelShuffle

MIN_PRIMARY_SCALE = 1e-3  # relative to the largest |a_p| of the module: below it, dividing amplifies rounding


class FoldedGhost(nn.Module):
    """GhostModule with its BatchNorm folded away: primary conv (+bias) [-> shuffle] -> cheap depthwise (+bias)
    [+ border map] -> concat -> activation."""

    def __init__(self, primary: nn.Module, cheap: nn.Conv2d, border: torch.Tensor | None, act: nn.Module):
        super().__init__()
        self.primary, self.cheap, self.act = primary, cheap, act
        self.register_buffer("border", border)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        primary = self.primary(x)
        cheap = self.cheap(primary)
        if self.border is not None:
            cheap = cheap + self.border
        return self.act(torch.cat([cheap, primary], dim=1))


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = a*x + b, in float64 so the fold adds no rounding of its own."""
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    a = gamma / torch.sqrt(var + bn.eps)
    return a, beta - mean * a


@torch.no_grad()
def fold_ghost(module: GhostModule, hw: tuple[int, int]) -> FoldedGhost | None:
    """The folded equivalent of a GhostModule whose primary output is hw (H, W); None if it cannot be folded."""
    conv = module.primary if isinstance(module.primary, nn.Conv2d) else module.primary[0]
    shuffle = None if isinstance(module.primary, nn.Conv2d) else module.primary[1]
    cheap = module.cheap
    half = cheap.in_channels
    if cheap.groups != half or cheap.stride != (1, 1) or cheap.padding != (1, 1) or cheap.bias is not None:
        return None
    a, b = bn_affine(module.bn)
    a_c, b_c, a_p, b_p = a[:half], b[:half], a[half:], b[half:]
    if a_p.abs().min() < MIN_PRIMARY_SCALE * a_p.abs().max():
        return None

    # conv output channel j sits at position position[j] after the shuffle
    position = torch.arange(half)
    if shuffle is not None:
        assert isinstance(shuffle, ChannelShuffle)
        order = shuffle(torch.arange(half, dtype=torch.float64).view(1, half, 1, 1)).flatten().long()
        position = torch.argsort(order)
    scale, shift = a_p[position], b_p[position]
    primary = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.groups, bias=True)
    old_bias = conv.bias.double() if conv.bias is not None else torch.zeros(half, dtype=torch.float64)
    primary.weight.data = (conv.weight.double() * scale.view(-1, 1, 1, 1)).float()
    primary.bias.data = (old_bias * scale + shift).float()

    weight = cheap.weight.double() * (a_c / a_p).view(-1, 1, 1, 1)
    height, width = hw
    # what the depthwise conv adds when it reads the shift b_p through zero padding, per position
    shift_map = -F.conv2d(b_p.view(1, half, 1, 1).expand(1, half, height, width), weight, padding=1, groups=half)
    interior = -(weight.sum(dim=(1, 2, 3)) * b_p)  # every tap inside the map
    folded_cheap = nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=True)
    folded_cheap.weight.data = weight.float()
    folded_cheap.bias.data = (b_c + interior).float()
    border = shift_map - interior.view(1, half, 1, 1)
    border[..., 1:-1, 1:-1] = 0.0  # zero in exact arithmetic; clear float64's last-bit residue
    border = border.float() if border.abs().max() > 0 else None
    new_primary = primary if shuffle is None else nn.Sequential(primary, copy.deepcopy(shuffle))
    return FoldedGhost(new_primary, folded_cheap, border, copy.deepcopy(module.act))


def reparameterize(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, dict]:
    """A copy of `model` (eval mode) with every foldable ghost module folded; returns (copy, counts)."""
    model = copy.deepcopy(model).eval()
    sizes: dict[nn.Module, tuple[int, int]] = {}
    hooks = [m.primary.register_forward_hook(lambda mod, inp, out, owner=m: sizes.__setitem__(owner, out.shape[-2:]))
             for m in model.modules() if isinstance(m, GhostModule)]
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    counts = {"ghost_folded": 0, "ghost_kept": 0}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GhostModule):
                folded = fold_ghost(child, tuple(sizes[child]))
                counts["ghost_folded" if folded is not None else "ghost_kept"] += 1
                if folded is not None:
                    setattr(parent, name, folded)
    return model, counts
