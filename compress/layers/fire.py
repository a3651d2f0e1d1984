"""Fire module (SqueezeNet, Iandola et al. 2016), generalised over the paper's many Fire variants.

squeeze (in -> s) -> [expand1x1 (s -> e1) || expand3x3 (s -> e3)] -> concat -> post, each branch a tuple of layer
tokens (see ops.py), so the paper's eight Fire flavours are data:

- ResNet-101 exp 2: squeeze ("pw+b", "relu"); expands ("pw+b", "relu") and ("c3+b", "relu") carrying the block's
  stride; no BatchNorm anywhere; a residual shortcut is added outside (see ResidualFire).
- VGG-19 exp 5: squeeze ("pw+b", "dead-bn") - the code computed BN+ReLU on the squeeze and fed the raw squeeze
  output to the expands; exp 8 likewise discards the 3x3 expand's BN ("dw-mult", "dead-bn").
- VGG-19 exp 9-11 use ghost modules as squeeze/expand3x3, exp 13 a DiCE unit as expand3x3.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .ops import build_ops
from .residual import Residual, projection


class Fire(nn.Module):
    def __init__(self, in_channels: int, squeeze: int, expand1: int, expand3: int, *,
                 squeeze_ops: Sequence[str], expand1_ops: Sequence[str], expand3_ops: Sequence[str],
                 post_ops: Sequence[str] = (), stride: int = 1, hw: tuple[int, int] | None = None):
        super().__init__()
        self.squeeze = build_ops(squeeze_ops, in_channels, squeeze)
        self.expand1x1 = build_ops(expand1_ops, squeeze, expand1, stride, hw)
        self.expand3x3 = build_ops(expand3_ops, squeeze, expand3, stride, hw)
        self.post = build_ops(post_ops, expand1 + expand3, expand1 + expand3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return self.post(torch.cat([self.expand1x1(s), self.expand3x3(s)], dim=1))


class ResidualFire(Residual):
    """The ResNet-101 exp 2 block: a BN-free Fire (expands carry the stride, split half/half) plus the identity,
    or, when `ds`, a biased 1x1 + BN projection. No activation after the add."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, stride: int = 1, ds: bool = False,
                 hw: tuple[int, int] | None = None):
        body = Fire(in_channels, hidden, out_channels // 2, out_channels // 2, squeeze_ops=("pw+b", "relu"),
                    expand1_ops=("pw+b", "relu"), expand3_ops=("c3+b", "relu"), stride=stride)
        super().__init__(body, projection(in_channels, out_channels, stride, bias=True) if ds else None)
