"""Nx1 followed by 1xN factorised convolution (Inception-v3, Szegedy et al. 2016)."""

from __future__ import annotations

from torch import nn


class FactorizedConv(nn.Sequential):
    """Nx1 conv (in -> in) immediately followed by 1xN conv (in -> out); bias-free, nothing between them.

    The stride is split the same way: (s, 1) on the Nx1 conv, (1, s) on the 1xN conv (paper's conv_Nx1_1xN_block).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel: int = 3):
        super().__init__()
        pad = kernel // 2
        self.conv_nx1 = nn.Conv2d(in_channels, in_channels, (kernel, 1), (stride, 1), (pad, 0), bias=False)
        self.conv_1xn = nn.Conv2d(in_channels, out_channels, (1, kernel), (1, stride), (0, pad), bias=False)


def _register() -> None:
    from .ops import register_conv

    register_conv("nx1")(lambda i, o, s, hw: FactorizedConv(i, o, s))


_register()
