"""Squeeze-and-excitation (Hu et al. 2018), as the paper's SEConnection."""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """GAP -> Linear(c, c/r) -> ReLU -> Linear(c/r, c) -> sigmoid -> channel-wise scale.

    The paper's Linear layers have no bias, so this adds exactly c^2 * 2/r parameters. torchvision's
    SqueezeExcitation uses biased 1x1 convs and would break the published counts, hence a block of our own.
    """

    def __init__(self, channels: int, ratio: int = 4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, channels // ratio, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(channels // ratio, channels, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.fc2(self.act(self.fc1(self.pool(x).flatten(1)))))
        return x * scale[:, :, None, None]
