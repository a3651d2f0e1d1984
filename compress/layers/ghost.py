"""Ghost module and ghost bottleneck (GhostNet, Han et al. 2020), in the paper's form.

Differences from timm's GhostModule, all needed for the published counts: the concat order is [cheap, primary],
one BatchNorm follows the concat (timm has a BN+act on each branch), and the primary conv may be a grouped
pointwise conv followed by a channel shuffle (exp 13/14 of ResNet-101, exp 10/11 of VGG-19).
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import nn

from .depthwise import depthwise3x3
from .ops import bn_affine, build_ops, make_act, register_conv
from .residual import Residual, projection
from .se import SqueezeExcite
from .shuffle import ChannelShuffle, grouped_pointwise, pointwise_groups


class GhostModule(nn.Module):
    """primary 1x1 (in -> out/2) [-> shuffle] -> cheap depthwise 3x3 -> concat [cheap, primary] -> BN -> act."""

    def __init__(self, in_channels: int, out_channels: int, act: str | None = None, primary_groups: int = 1):
        super().__init__()
        half = out_channels // 2
        conv = grouped_pointwise(in_channels, half, primary_groups)
        self.primary = conv if primary_groups == 1 else nn.Sequential(conv, ChannelShuffle(primary_groups))
        self.cheap = depthwise3x3(half)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        primary = self.primary(x)
        return self.act(self.bn(torch.cat([self.cheap(primary), primary], dim=1)))

    def deploy(self, form: str) -> nn.Module | None:
        """This module's exact deploy-time form (the rewrite it carries itself, as timm's reparameterizable blocks
        do; export/reparam.py asks every block for it): "depthwise" (two convs, the fewest operators), "fold"
        (the BatchNorm folded, the primary conv kept as it is: the fewest multiply-adds) or "fold-dense" (folded,
        a shuffled primary as one dense conv: no layout op). None when the form does not apply to this module
        (its cheap op is not a stride-1 3x3 depthwise conv)."""
        if form == "depthwise":
            return ghost_as_depthwise(self)
        if form in ("fold", "fold-dense"):
            return fold_ghost(self, dense=form == "fold-dense")
        raise ValueError(f"unknown ghost form {form!r}")

    @property
    def shuffled(self) -> bool:
        return not isinstance(self.primary, nn.Conv2d)


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
        channel = shuffle(torch.arange(half, dtype=torch.float64).view(1, half, 1, 1)).flatten().long()
    return GhostParts(conv, channel, cheap, half, *bn_affine(module.bn))


class DepthwiseGhost(nn.Module):
    """GhostModule as: pointwise conv writing each primary channel twice -> one depthwise 3x3 conv (cheap op |
    scaled identity, each with its slice of the BatchNorm) -> activation. Two operators per module, no concat, no
    BatchNorm: exact for any weights (the identity tap never reads the zero padding, and the cheap half reads the
    true primary output). The price is arithmetic: the primary conv does twice its multiply-adds, and a grouped
    primary with its channel shuffle becomes one dense conv whose rows are already in the shuffled order."""

    def __init__(self, primary: nn.Conv2d, depthwise: nn.Conv2d, act: nn.Module):
        super().__init__()
        self.primary, self.depthwise, self.act = primary, depthwise, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.depthwise(self.primary(x)))


@torch.no_grad()
def ghost_as_depthwise(module: GhostModule) -> DepthwiseGhost | None:
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


class ChannelShift(nn.Module):
    """x + shift, one constant per channel (a BatchNorm's shift on its own, where it cannot go into a conv)."""

    def __init__(self, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("shift", shift.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


class FoldedGhost(nn.Module):
    """GhostModule with its BatchNorm folded and no multiply-add copied: primary conv [-> shuffle] -> y, then
    concat [act(cheap(y)), act(affine(y))]. The cheap depthwise conv reads y itself (zero padding stays exact) with
    the cheap half's scale and shift in its weights and bias; `affine` is what the primary half's BatchNorm left:
    its shift (the scale went into the primary conv, divided out of the cheap conv's weights), or a 1x1 depthwise
    conv with scale and shift where a scale is too small to divide by, or nothing once the shift was moved
    downstream (release_shift)."""

    def __init__(self, primary: nn.Module, cheap: nn.Conv2d, affine: nn.Module, act: nn.Module):
        super().__init__()
        self.primary, self.cheap, self.affine, self.act = primary, cheap, affine, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        primary = self.primary(x)
        return torch.cat([self.act(self.cheap(primary)), self.act(self.affine(primary))], dim=1)

    @property
    def conv(self) -> nn.Conv2d:
        """The conv that reads the module's input (where an input shift can be absorbed)."""
        return self.primary if isinstance(self.primary, nn.Conv2d) else self.primary[0]

    @torch.no_grad()
    def release_shift(self) -> torch.Tensor | None:
        """Take the constant per-channel shift off this module's output and return it (float64, over the concat),
        for the caller to add downstream; None when it cannot (an activation follows, or a scale stayed)."""
        if not isinstance(self.act, nn.Identity) or not isinstance(self.affine, (ChannelShift, nn.Identity)):
            return None
        half = self.cheap.out_channels
        shift = torch.zeros(2 * half, dtype=torch.float64)
        if self.cheap.bias is not None:
            shift[:half] = self.cheap.bias.double()
            self.cheap.bias = None
        if isinstance(self.affine, ChannelShift):
            shift[half:] = self.affine.shift.double().flatten()
        self.affine = nn.Identity()
        return shift


MIN_PRIMARY_SCALE = 1e-3  # relative to the largest |scale| of the module: below it, dividing amplifies rounding


def _dense_in_shuffled_order(conv: nn.Conv2d, channel: torch.Tensor) -> nn.Conv2d:
    """A grouped 1x1 conv and the channel shuffle after it as one dense conv whose output rows are already in the
    shuffled order (zeros where a group does not read an input channel): no layout op, `groups` x the MACs."""
    per_in, per_out = conv.in_channels // conv.groups, conv.out_channels // conv.groups
    dense = torch.zeros(conv.out_channels, conv.in_channels, *conv.kernel_size, dtype=conv.weight.dtype)
    for group in range(conv.groups):
        rows, cols = slice(group * per_out, (group + 1) * per_out), slice(group * per_in, (group + 1) * per_in)
        dense[rows, cols] = conv.weight[rows]
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None)
    out.weight.copy_(dense[channel])
    if conv.bias is not None:
        out.bias.copy_(conv.bias[channel])
    return out


@torch.no_grad()
def fold_ghost(module: GhostModule, dense: bool = False) -> FoldedGhost | None:
    """The folded form ("fold"); with `dense`, a shuffled primary becomes a dense conv in shuffled order
    ("fold-dense": no layout op, the primary conv's MACs times its groups)."""
    parts = _ghost_parts(module)
    if parts is None:
        return None
    conv, channel, cheap, half, a, b = parts
    a_c, b_c, a_p, b_p = a[:half], b[:half], a[half:], b[half:]
    shuffled = not isinstance(module.primary, nn.Conv2d)
    if dense and shuffled:
        primary: nn.Module = _dense_in_shuffled_order(conv, channel)
        order = torch.arange(half)  # output channel j already sits at concat position j
    else:
        primary = copy.deepcopy(module.primary)
        order = torch.argsort(channel)  # conv output channel j sits at concat position order[j]
    divisible = a_p.abs().min() >= MIN_PRIMARY_SCALE * a_p.abs().max()
    folded_cheap = nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=True)
    if divisible:  # the primary half's scale into the primary conv, the inverse into the cheap conv
        first = primary if isinstance(primary, nn.Conv2d) else primary[0]
        scale = a_p[order]
        first.weight.copy_((first.weight.double() * scale.view(-1, 1, 1, 1)).float())
        if first.bias is not None:
            first.bias.copy_((first.bias.double() * scale).float())
        folded_cheap.weight.copy_((cheap.weight.double() * (a_c / a_p).view(-1, 1, 1, 1)).float())
        affine: nn.Module = ChannelShift(b_p.float())
    else:  # a primary channel the network switched off: keep its scale in a 1x1 depthwise conv
        folded_cheap.weight.copy_((cheap.weight.double() * a_c.view(-1, 1, 1, 1)).float())
        affine = nn.Conv2d(half, half, 1, groups=half, bias=True)
        affine.weight.copy_(a_p.float().view(-1, 1, 1, 1))
        affine.bias.copy_(b_p.float())
    folded_cheap.bias.copy_(b_c.float())
    return FoldedGhost(primary, folded_cheap, affine, copy.deepcopy(module.act))


register_conv("ghost")(lambda i, o, s, hw: GhostModule(i, o))
register_conv("ghost-gpw")(lambda i, o, s, hw: GhostModule(i, o, primary_groups=pointwise_groups(i)))


class GhostBottleneck(Residual):
    """GM(in -> hidden, ReLU6) [-> depthwise 3x3 stride s + BN] [-> SE] -> GM(hidden -> out) + shortcut.

    `stride_dw` says when the depthwise stride layer exists: "ds" = in every block with a projection shortcut, even
    at stride 1 (exp 10-12, a quirk); "strided" = only when the stride is 2 (exp 13/14). `primary_groups` groups
    the ghost modules' primary convs (4 in exp 13/14, whatever the width). No activation after the add.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, stride: int = 1, ds: bool = False,
                 hw: tuple[int, int] | None = None, *, primary_groups: int = 1, stride_dw: str = "ds",
                 se_ratio: int | None = None):
        has_dw = {"ds": ds, "strided": stride > 1}[stride_dw]
        body = nn.Sequential()
        body.add_module("expand", GhostModule(in_channels, hidden, "relu6", primary_groups))
        if has_dw:
            body.add_module("dw", build_ops(("dw", "bn"), hidden, hidden, stride))
        if se_ratio:
            body.add_module("se", SqueezeExcite(hidden, se_ratio))
        body.add_module("project", GhostModule(hidden, out_channels, None, primary_groups))
        super().__init__(body, projection(in_channels, out_channels, stride) if ds else None)
