"""Channel shuffle and the paper's grouped pointwise convolution (ShuffleNet, Zhang et al. 2018).

ChannelShuffle is an nn.Module (not a function) so that structured pruning can name it: Torch-Pruning cannot see
through a view/transpose written inline (VainF/Torch-Pruning#45).
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelShuffle(nn.Module):
    """Interleave `groups` channel groups: (g, c/g) -> (c/g, g). Batch size is left symbolic for dynamic export."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return x
        channels = x.shape[1]
        return x.unflatten(1, (self.groups, channels // self.groups)).transpose(1, 2).flatten(1, 2)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"

    def deploy(self, form: str) -> nn.Module | None:
        """"channel-last": the same shuffle written for a channel-last graph (TFLite), see ChannelLastShuffle."""
        if form == "channel-last":
            return ChannelLastShuffle(self.groups) if self.groups > 1 else None
        raise ValueError(f"unknown shuffle form {form!r}")


class ChannelLastShuffle(ChannelShuffle):
    """The same permutation computed on a channel-last view: NCHW -> NHWC, split C into (g, C/g), swap, NHWC ->
    NCHW. A converter that runs the graph channel-last (litert-torch) cancels the two permutes against its own
    layout changes, so the shuffle is one transpose between two reshapes instead of a transpose to NCHW and back
    around each of them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        nhwc = x.permute(0, 2, 3, 1)
        shuffled = nhwc.reshape(n, h, w, self.groups, c // self.groups).transpose(3, 4).reshape(n, h, w, c)
        return shuffled.permute(0, 3, 1, 2)


def pointwise_groups(in_channels: int, groups: int = 4, min_channels: int = 24) -> int:
    """The paper's groupPointwiseConv rule: group only when the input is wider than 24 channels."""
    return groups if in_channels > min_channels else 1


def grouped_pointwise(in_channels: int, out_channels: int, groups: int, stride: int = 1) -> nn.Conv2d:
    """1x1 conv with `groups` groups and no bias (the shuffle, when wanted, follows as its own module)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, groups=groups, bias=False)
