"""DiCE unit, strided DiCE and the DiCE bottleneck (Mehta et al. 2020, "DiCENet"), as the paper's code has them.

The paper took DiCE from sacmehta/EdgeNets and changed it; this module follows the paper's version (counts in
docs/paper-spec.md): ReLU instead of PReLU, a grouped 1x1 "weight averaging" conv with padding 1 (the spatial size
grows by 2) undone by a valid 3x3 projection, and a strided form whose outputs are split half/half.

DiCE is tied to the spatial size it was built for: the height-wise and width-wise convs treat H and W as channels.
At another input size the tensor is resized to the configured size and back (bilinear up, average-pool down), as
in EdgeNets; at the configured size (always, inside the zoo) no resize op is emitted, which keeps export clean.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .depthwise import depthwise3x3
from .ops import build_ops, register_conv
from .residual import Discarded, Residual, projection
from .shuffle import ChannelShuffle


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    if x.shape[-2] < size[0] or x.shape[-1] < size[1]:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    return F.adaptive_avg_pool2d(x, size)


class DiCE(nn.Module):
    """Dimension-wise convolutions (channel, height, width) + dimension-wise fusion, C -> C' channels.

    1. depthwise 3x3 over channels (C groups), over height (H groups, on the tensor with H as the channel axis) and
       over width (W groups); 2. concat -> BN(3C) + ReLU -> shuffle(3); 3. grouped 1x1 3C -> C (C groups, padding 1)
       + BN + ReLU; 4. gate: GAP -> 1x1 C -> C/4 -> ReLU -> 1x1 C/4 -> C' -> sigmoid; 5. projection: 3x3 C -> C'
       (padding 0, gcd(C, C') groups) + BN + ReLU; output = projection * gate.
    """

    def __init__(self, in_channels: int, out_channels: int, height: int, width: int):
        super().__init__()
        self.size = (height, width)
        self.conv_channel = depthwise3x3(in_channels)
        self.conv_height = depthwise3x3(height)
        self.conv_width = depthwise3x3(width)
        self.fuse = nn.Sequential(nn.BatchNorm2d(3 * in_channels), nn.ReLU(inplace=True), ChannelShuffle(3),
                                  nn.Conv2d(3 * in_channels, in_channels, 1, padding=1, groups=in_channels, bias=False),
                                  nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True))
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, in_channels // 4, 1, bias=False),
                                  nn.ReLU(inplace=True), nn.Conv2d(in_channels // 4, out_channels, 1, bias=False),
                                  nn.Sigmoid())
        self.project = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, groups=math.gcd(in_channels, out_channels), bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def _along(self, x: torch.Tensor, dim: int, conv: nn.Module) -> torch.Tensor:
        """Depthwise conv with spatial axis `dim` (2 = H, 3 = W) as the channel axis, at the configured size."""
        size = tuple(x.shape[-2:])
        fitted = list(size)
        fitted[dim - 2] = self.size[dim - 2]
        y = conv(_resize(x, tuple(fitted)).transpose(1, dim)).transpose(1, dim)
        return _resize(y, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        merged = torch.cat([self.conv_channel(x), self._along(x, 2, self.conv_height),
                            self._along(x, 3, self.conv_width)], dim=1)
        fused = self.fuse(merged)
        return self.project(fused) * self.gate(fused)


class StridedDiCE(nn.Module):
    """Halve the resolution: [DW 3x3 s2 + BN + ReLU + PW C -> C'/2 + BN + ReLU] || [AvgPool 3x3 s2 -> DiCE(C -> C'/2)],
    concat, shuffle(2). `height`/`width` are the output (post-stride) size."""

    def __init__(self, in_channels: int, out_channels: int, height: int, width: int):
        super().__init__()
        half = out_channels // 2
        self.left = nn.Sequential(build_ops(("dw", "bn", "relu"), in_channels, in_channels, 2),
                                  build_ops(("pw", "bn", "relu"), in_channels, half))
        self.right = nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1), DiCE(in_channels, half, height, width))
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(torch.cat([self.left(x), self.right(x)], dim=1))


register_conv("dice")(lambda i, o, s, hw: DiCE(i, o, *hw))


class DiCEBottleneck(Residual):
    """PW in -> hidden + BN + ReLU -> DiCE (strided DiCE when `ds` and stride 2) -> + shortcut; no act after.

    `hw` is the block's output size. Quirk kept for the published count: every `ds` block also builds a depthwise
    3x3 + BN "downsample" on the hidden width that forward never calls (8,448 parameters in ResNet-101 exp 15).
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, stride: int = 1, ds: bool = False,
                 hw: tuple[int, int] | None = None):
        unit = StridedDiCE if ds and stride == 2 else DiCE
        body = nn.Sequential(build_ops(("pw", "bn", "relu"), in_channels, hidden), unit(hidden, out_channels, *hw))
        if ds:
            body.add_module("unused_downsample", Discarded(depthwise3x3(hidden), nn.BatchNorm2d(hidden)))
        super().__init__(body, projection(in_channels, out_channels, stride) if ds else None)
