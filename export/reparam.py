"""Export-time re-parameterisation: the same function with fewer ops, applied to a copy of the trained model just
before it is converted (the training graph and the faithful zoo variants stay as they are). Two rewrites of the
paper's ghost module, chosen per file precision by the export (`GHOST_REWRITES`):

**depthwise** (int8 default). The module becomes two convs and nothing else: the primary 1x1 conv writes every
output channel twice, [y, y], and one depthwise 3x3 conv computes both halves of the concat at once -- the cheap
op with the cheap slice of the BatchNorm on the first copy, and an identity tap scaled by the primary slice's
affine on the second. No concat, no add, no BatchNorm; exact for any weights (the identity tap never reads the
zero padding, and the cheap half reads the true y, as the original does). The price is arithmetic: the primary
conv does twice its multiply-adds (exp11: 29.1 -> 55.0 M MACs in the TFLite converter's count). At batch 1 on a
CPU these models are bound by per-op overhead, not arithmetic, and int8 runtimes pay most per op: dropping the
concat and the float BatchNorm island per module is what makes the int8 files faster (README, "int8 graphs").
A grouped primary with its channel shuffle (exp13/14, VGG exp10/11) becomes one dense 1x1 conv whose output rows are
already in the shuffled order: the shuffle is absorbed, at groups x the primary's arithmetic (8x with the copy).
Measured on exp13, this is faster than keeping the grouped conv and a channel permutation in every runtime and
precision tried: the permutation is a Gather (ONNX) or GATHER_ND between two transposes (TFLite), which neither
onnxruntime's NHWC int8 path nor XNNPACK runs without leaving its fast path (README, "int8 graphs").

**auto** (fp32 default): the depthwise form where a module has a channel shuffle, the module as trained elsewhere.

**fold** (the fp32 default before the depthwise form; kept as an option):

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
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from edgecnn.compress.layers.ghost import GhostModule
from edgecnn.compress.layers.ops import bn_affine
from edgecnn.compress.layers.shuffle import ChannelShuffle
from edgecnn.errors import EdgecnnError

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


class GhostParts(NamedTuple):
    """What both rewrites read off a GhostModule: its convs, where each primary channel sits in the concat, and
    its BatchNorm as a per-channel affine (float64) over the concat [cheap half | primary half]."""

    conv: nn.Conv2d  # the primary 1x1 (possibly grouped)
    channel: torch.Tensor  # concat position p of the primary half carries conv output channel[p]
    cheap: nn.Conv2d
    half: int
    scale: torch.Tensor
    shift: torch.Tensor


def _ghost_parts(module: GhostModule) -> GhostParts | None:
    """The parts of a module both rewrites can take; None if the cheap op is not a bias-free 3x3 depthwise conv at
    stride 1. The channel map is the identity without a shuffle."""
    conv = module.primary if isinstance(module.primary, nn.Conv2d) else module.primary[0]
    shuffle = None if isinstance(module.primary, nn.Conv2d) else module.primary[1]
    cheap, half = module.cheap, module.cheap.in_channels
    if cheap.groups != half or cheap.stride != (1, 1) or cheap.padding != (1, 1) or cheap.bias is not None:
        return None
    channel = torch.arange(half)
    if shuffle is not None:
        assert isinstance(shuffle, ChannelShuffle)
        channel = shuffle(torch.arange(half, dtype=torch.float64).view(1, half, 1, 1)).flatten().long()
    return GhostParts(conv, channel, cheap, half, *bn_affine(module.bn))


@torch.no_grad()
def fold_ghost(module: GhostModule, hw: tuple[int, int]) -> FoldedGhost | None:
    """The folded equivalent of a GhostModule whose primary output is hw (H, W); None if it cannot be folded."""
    parts = _ghost_parts(module)
    if parts is None:
        return None
    conv, channel, cheap, half, a, b = parts
    a_c, b_c, a_p, b_p = a[:half], b[:half], a[half:], b[half:]
    if a_p.abs().min() < MIN_PRIMARY_SCALE * a_p.abs().max():
        return None

    position = torch.argsort(channel)  # conv output channel j sits at concat position position[j]
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
    new_primary = primary if isinstance(module.primary, nn.Conv2d) else nn.Sequential(primary,
                                                                                     copy.deepcopy(module.primary[1]))
    return FoldedGhost(new_primary, folded_cheap, border, copy.deepcopy(module.act))


class DepthwiseGhost(nn.Module):
    """GhostModule as: pointwise conv writing each primary channel twice -> one depthwise 3x3 conv (cheap op |
    scaled identity, each with its slice of the BatchNorm) -> activation."""

    def __init__(self, primary: nn.Conv2d, depthwise: nn.Conv2d, act: nn.Module):
        super().__init__()
        self.primary, self.depthwise, self.act = primary, depthwise, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.depthwise(self.primary(x)))


@torch.no_grad()
def ghost_as_depthwise(module: GhostModule) -> DepthwiseGhost | None:
    """The two-conv equivalent of a GhostModule (see the module doc); None if its cheap op is not a 3x3 depthwise."""
    parts = _ghost_parts(module)
    if parts is None:
        return None
    conv, channel, cheap, half, a, b = parts
    # the conv's weights as a dense (half, in, kh, kw) tensor: zeros where a group does not read an input channel
    per_in, per_out = conv.in_channels // conv.groups, half // conv.groups
    dense = torch.zeros(half, conv.in_channels, *conv.kernel_size, dtype=conv.weight.dtype)
    for group in range(conv.groups):
        rows, cols = slice(group * per_out, (group + 1) * per_out), slice(group * per_in, (group + 1) * per_in)
        dense[rows, cols] = conv.weight[rows]
    rows = torch.cat([channel, channel])
    primary = nn.Conv2d(conv.in_channels, 2 * half, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                        groups=1, bias=conv.bias is not None)
    primary.weight.copy_(dense[rows])
    if conv.bias is not None:
        primary.bias.copy_(conv.bias[rows])
    weight = torch.zeros(2 * half, 1, 3, 3, dtype=torch.float64)
    weight[:half] = cheap.weight.double() * a[:half].view(-1, 1, 1, 1)
    weight[half:, 0, 1, 1] = a[half:]
    depthwise = nn.Conv2d(2 * half, 2 * half, 3, 1, 1, groups=2 * half, bias=True)
    depthwise.weight.copy_(weight.float())
    depthwise.bias.copy_(b.float())
    return DepthwiseGhost(primary, depthwise, copy.deepcopy(module.act))


GHOST_REWRITES = ("none", "fold", "depthwise", "auto")


def check_ghost_rewrite(value: str, label: str = "the ghost rewrite") -> None:
    if value not in GHOST_REWRITES:
        raise EdgecnnError(f"{label} must be one of {', '.join(GHOST_REWRITES)}, not {value!r}")


def _has_shuffle(module: GhostModule) -> bool:
    return not isinstance(module.primary, nn.Conv2d)


def reparameterize(model: nn.Module, example: torch.Tensor, ghost: str = "fold") -> tuple[nn.Module, dict]:
    """A copy of `model` (eval mode) with every ghost module rewritten as `ghost` says (GHOST_REWRITES); returns
    (copy, counts). Modules the rewrite cannot take are kept as they are and counted.

    "auto" (the fp32 default) takes the depthwise form only for modules with a channel shuffle, where absorbing the
    shuffle pays for the copied primary; a float runtime gains nothing from the copy elsewhere (README)."""
    check_ghost_rewrite(ghost)
    model = copy.deepcopy(model).eval()
    counts = {"ghost": ghost, "ghost_rewritten": 0, "ghost_kept": 0}
    if ghost == "none":
        counts["ghost_kept"] = sum(isinstance(m, GhostModule) for m in model.modules())
        return model, counts
    sizes: dict[nn.Module, tuple[int, int]] = {}  # the fold's border map depends on the primary output's size
    hooks = [m.primary.register_forward_hook(lambda mod, inp, out, owner=m: sizes.__setitem__(owner, out.shape[-2:]))
             for m in model.modules() if isinstance(m, GhostModule)]
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GhostModule):
                if ghost == "fold":
                    rewritten = fold_ghost(child, tuple(sizes[child]))
                elif ghost == "depthwise" or _has_shuffle(child):
                    rewritten = ghost_as_depthwise(child)
                else:
                    rewritten = None
                counts["ghost_rewritten" if rewritten is not None else "ghost_kept"] += 1
                if rewritten is not None:
                    setattr(parent, name, rewritten)
    return model, counts
