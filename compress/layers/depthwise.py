"""Depthwise and depthwise-separable convolutions (MobileNet, Howard et al. 2017)."""

from __future__ import annotations

from torch import nn


def depthwise3x3(channels: int, stride: int = 1, multiplier: int = 1) -> nn.Conv2d:
    """3x3 conv with one group per input channel; `multiplier` output channels per input channel. No bias."""
    return nn.Conv2d(channels, channels * multiplier, 3, stride=stride, padding=1, groups=channels, bias=False)


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3x3 (stride here) then pointwise 1x1, both bias-free, no norm/activation between them.

    This is the paper's DWSconv; it is also its RGB stem from exp 4 on (27 + 3*C weights).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.dw = depthwise3x3(in_channels, stride)
        self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)


def _register() -> None:
    from .ops import register_conv

    register_conv("dws")(lambda i, o, s, hw: DepthwiseSeparable(i, o, s))


_register()
