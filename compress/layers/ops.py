"""A tiny vocabulary of layers, so that a block's branch or a variant's stem/head is data, not code.

A branch is a tuple of tokens applied in order, e.g. ``("gpw", "bn", "relu", "shuffle")``. The first
channel-changing token maps ``in -> out``; everything after it works on ``out`` channels. Conv tokens:

============  =============================================================================================
``c3``        3x3 conv, no bias                 ``c3+b``     3x3 conv with bias
``pw``        1x1 conv, no bias                 ``pw+b``     1x1 conv with bias
``gpw``       grouped 1x1, 4 groups when in > 24 channels (the paper's groupPointwiseConv rule), no bias
``gpw-gcd``   grouped 1x1, gcd(in, out) groups when in > 24 channels, no bias (VGG-19 exp 13)
``dw``        depthwise 3x3 (out == in)         ``dw-mult``  3x3 with groups=in, out = k*in (channel multiplier)
``dws``       depthwise-separable (DW 3x3 + PW)  ``nx1``      3x1 then 1x3 factorised conv
``ghost``     ghost module (its own BN)         ``ghost-gpw`` ghost module, grouped+shuffled primary (4 groups when in > 24)
``dice``      DiCE unit (needs the spatial size)
============  =============================================================================================

Other tokens: ``bn``, ``relu``, ``relu6``, ``shuffle`` (with the group count of the last grouped conv; nothing if
it was not grouped), ``shuffle<N>`` (N groups), and ``dead-bn`` (a BatchNorm the paper built but whose output it
discarded: counted, never run; see :class:`Discarded`). Blocks register their own conv tokens with
:func:`register_conv`, so this module imports none of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .residual import Discarded
from .shuffle import ChannelShuffle, pointwise_groups

# factory(in_channels, out_channels, stride, hw) -> module
ConvFactory = Callable[[int, int, int, "tuple[int, int] | None"], nn.Module]
_CONVS: dict[str, ConvFactory] = {}


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = a*x + b per channel, in float64 (so a fold adds no rounding of its own)."""
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(var)
    a = gamma / torch.sqrt(var + bn.eps)
    return a, beta - mean * a


def register_conv(name: str) -> Callable[[ConvFactory], ConvFactory]:
    def add(factory: ConvFactory) -> ConvFactory:
        if name in _CONVS:
            raise ValueError(f"conv token {name!r} registered twice")
        _CONVS[name] = factory
        return factory

    return add


def make_act(name: str | None) -> nn.Module:
    """Activation by name; None is the identity. Only the paper's activations are offered."""
    if name is None:
        return nn.Identity()
    acts = {"relu": nn.ReLU, "relu6": nn.ReLU6}
    if name not in acts:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(acts)}")
    return acts[name](inplace=True)


def _conv(kernel: int, bias: bool = False, groups: Callable[[int, int], int] = lambda i, o: 1) -> ConvFactory:
    def factory(i: int, o: int, s: int, hw: tuple[int, int] | None) -> nn.Module:
        return nn.Conv2d(i, o, kernel, s, kernel // 2, groups=groups(i, o), bias=bias)

    return factory


register_conv("c3")(_conv(3))
register_conv("c3+b")(_conv(3, bias=True))
register_conv("pw")(_conv(1))
register_conv("pw+b")(_conv(1, bias=True))
register_conv("gpw")(_conv(1, groups=lambda i, o: pointwise_groups(i)))
register_conv("gpw-gcd")(_conv(1, groups=lambda i, o: math.gcd(i, o) if i > 24 else 1))
register_conv("dw-mult")(_conv(3, groups=lambda i, o: i))


@register_conv("dw")
def _depthwise(i: int, o: int, s: int, hw: tuple[int, int] | None) -> nn.Module:
    if i != o:
        raise ValueError(f"'dw' keeps the width; got {i} -> {o} (use 'dw-mult' or 'dws')")
    return nn.Conv2d(i, i, 3, s, 1, groups=i, bias=False)


def build_ops(tokens: Sequence[str], in_channels: int, out_channels: int, stride: int = 1,
              hw: tuple[int, int] | None = None) -> nn.Sequential:
    """Build the layers named by `tokens`; the stride goes to the first conv token."""
    layers: list[nn.Module] = []
    width, last_groups, converted = in_channels, 1, False
    for token in tokens:
        if token in _CONVS:
            if converted:
                raise ValueError(f"{tokens}: only one conv token per branch")
            layers.append(_CONVS[token](width, out_channels, stride, hw))
            width, converted = out_channels, True
            last_groups = getattr(layers[-1], "groups", 1)
        elif token == "bn":
            layers.append(nn.BatchNorm2d(width))
        elif token == "dead-bn":
            layers.append(Discarded(nn.BatchNorm2d(width)))
        elif token in ("relu", "relu6"):
            layers.append(make_act(token))
        elif token.startswith("shuffle"):
            groups = int(token[len("shuffle"):] or last_groups)
            if groups > 1:
                layers.append(ChannelShuffle(groups))
        else:
            raise ValueError(f"unknown layer token {token!r}; known: {', '.join(sorted(_CONVS))}, bn, dead-bn, "
                             "relu, relu6, shuffle, shuffle<N>")
    if not converted and in_channels != out_channels:
        raise ValueError(f"{tokens}: no conv token to map {in_channels} -> {out_channels} channels")
    return nn.Sequential(*layers)
