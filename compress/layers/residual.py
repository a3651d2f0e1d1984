"""The residual wiring shared by every ResNet-line block: body + shortcut (+ optional activation)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def projection(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> nn.Sequential:
    """1x1 conv (stride s) + BN: the shortcut of a block that changes width or resolution."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias), nn.BatchNorm2d(out_channels))


class Residual(nn.Module):
    """out = act(body(x) + shortcut(x)); the shortcut is the identity when none is given."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None, act: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class RemovedBlock(nn.Module):
    """Where depth pruning (compress/methods/depth.py) took out a residual block with an identity shortcut:
    act(x), i.e. the block with its body gone. The block's own activation module is kept (Identity in ghost
    bottlenecks), so the remaining graph computes exactly act(0 + x). An in-place activation (torchvision's and
    timm's ResNet blocks) becomes out of place: in the block it acted on the sum, here it would overwrite the
    previous block's output, which autograd still needs."""

    def __init__(self, act: nn.Module):
        super().__init__()
        if getattr(act, "inplace", False):
            act = copy.copy(act)
            act.inplace = False
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x)


class Discarded(nn.Module):
    """Modules the paper's code built (and sometimes ran) but whose result it threw away.

    They are kept only so that parameter counts and checkpoint sizes match the published tables; forward is the
    identity, so they cost nothing at run time and vanish from exported graphs. Each use is a documented quirk.
    """

    def __init__(self, *modules: nn.Module):
        super().__init__()
        self.unused = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
