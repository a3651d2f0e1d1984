"""Inverted residual bottleneck (MobileNetV2, Sandler et al. 2018), in the paper's form.

torchvision's InvertedResidual only adds the identity when the shape is kept; the paper's block also has a 1x1+BN
projection shortcut (`ds`) when the width or resolution changes, and takes the hidden width directly (64/128/256/512
per stage), not as a multiplier.
"""

from __future__ import annotations

from torch import nn

from .ops import build_ops
from .residual import Residual, projection


class InvertedResidual(Residual):
    """PW in->hidden + BN + ReLU6 -> DW 3x3 (stride) + BN + ReLU6 -> PW hidden->out + BN, + shortcut; no act after."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, stride: int = 1, ds: bool = False,
                 hw: tuple[int, int] | None = None):
        body = nn.Sequential(
            build_ops(("pw", "bn", "relu6"), in_channels, hidden),
            build_ops(("dw", "bn", "relu6"), hidden, hidden, stride),
            build_ops(("pw", "bn"), hidden, out_channels),
        )
        super().__init__(body, projection(in_channels, out_channels, stride) if ds else None)
