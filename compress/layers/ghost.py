"""Ghost module and ghost bottleneck (GhostNet, Han et al. 2020), in the paper's form.

Differences from timm's GhostModule, all needed for the published counts: the concat order is [cheap, primary],
one BatchNorm follows the concat (timm has a BN+act on each branch), and the primary conv may be a grouped
pointwise conv followed by a channel shuffle (exp 13/14 of ResNet-101, exp 10/11 of VGG-19).
"""

from __future__ import annotations

import torch
from torch import nn

from .depthwise import depthwise3x3
from .ops import build_ops, make_act, register_conv
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
