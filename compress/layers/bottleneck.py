"""ResNet bottlenecks: torchvision's, with its 3x3 conv swapped, and the grouped-pointwise + shuffle variant."""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import Bottleneck

from .ops import build_ops
from .residual import Residual, projection


class ResNetBottleneck(Bottleneck):
    """torchvision's Bottleneck (v1.5: stride on the 3x3) with `conv2` built from a token: "c3" keeps the 3x3,
    "nx1" is the 3x1+1x3 pair (exp 3), "dw" a bare depthwise 3x3 (exp 4; the 1x1 convs already mix channels).

    torchvision's constructor-time init (Kaiming fan_out for its convs) is applied, as the paper's model got it
    from torchvision's resnet101; a replaced conv2 keeps PyTorch's default init, also as in the paper.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, stride: int = 1, ds: bool = False,
                 hw: tuple[int, int] | None = None, *, conv2: str = "c3"):
        if out_channels != hidden * self.expansion:
            raise ValueError(f"bottleneck output must be {self.expansion}x its width: {hidden} -> {out_channels}")
        super().__init__(in_channels, hidden, stride, projection(in_channels, out_channels, stride) if ds else None)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if conv2 != "c3":
            self.conv2 = build_ops((conv2,), hidden, hidden, stride)


class ShuffleBottleneck(Residual):
    """ShuffleNet-style bottleneck (ResNet-101 exp 5), post-add ReLU like torchvision's Bottleneck:

    grouped PW in->hidden + BN + ReLU + shuffle -> DW 3x3 (stride) + BN -> grouped PW hidden->out + BN + shuffle,
    with a full (ungrouped) 1x1+BN projection shortcut when `ds`.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, stride: int = 1, ds: bool = False,
                 hw: tuple[int, int] | None = None):
        body = nn.Sequential(
            build_ops(("gpw", "bn", "relu", "shuffle"), in_channels, hidden),
            build_ops(("dw", "bn"), hidden, hidden, stride),
            build_ops(("gpw", "bn", "shuffle"), hidden, out_channels),
        )
        super().__init__(body, projection(in_channels, out_channels, stride) if ds else None, nn.ReLU(inplace=True))
