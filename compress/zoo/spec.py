"""Declarative architecture specs. A paper variant is one of these values; builder.py turns it into a module.

Notation follows docs/paper-spec.md: a ResNet block row R(in, hidden, out, s, ds, n) is "n blocks in -> hidden -> out
with stride s (first block only) and a projection shortcut (ds)"; layer tokens are documented in layers/ops.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..layers import Fire, build_ops

#: VGG-19 configuration 'E': conv widths, "M" = 2x2 max-pool.
VGG19_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                    512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


@dataclass(frozen=True)
class Row:
    """`n` residual blocks; only the first gets `stride` and the projection shortcut (`ds`)."""

    cin: int
    hidden: int
    cout: int
    stride: int = 1
    ds: bool = False
    n: int = 1


def R(cin: int, hidden: int, cout: int, s: int = 1, ds: bool = False, n: int = 1) -> Row:  # noqa: N802 (table notation)
    return Row(cin, hidden, cout, s, ds, n)


@dataclass(frozen=True)
class HeadConv:
    """A 1x1 conv layer of the head (before pooling); `out=None` means "num_classes"."""

    ops: tuple[str, ...]
    out: int | None = None


@dataclass(frozen=True)
class Head:
    """convs -> [global average pool] -> flatten -> [hidden Linear+ReLU+Dropout(0.5) ...] -> [Linear] -> [Dropout].

    `logit_act` names a paper quirk: an activation on the logits, already part of the last conv's ops when the
    head is conv-only; it is recorded here so reports and a later "clean head" option can find it.
    """

    convs: tuple[HeadConv, ...] = ()
    pool: bool = True
    hidden: tuple[int, ...] = ()
    fc: bool = True
    fc_bias: bool = True
    logit_dropout: float = 0.0

    @property
    def logit_act(self) -> str | None:
        if self.fc or not self.convs:
            return None
        return next((t for t in reversed(self.convs[-1].ops) if t in ("relu", "relu6")), None)


@dataclass(frozen=True)
class ResNetSpec:
    """Stem (conv tokens + BN + ReLU, 32x32 kept: no max-pool) -> four stages of `block` rows -> head."""

    stem: tuple[str, ...]
    stem_width: int
    block: Callable[..., nn.Module]  # (cin, hidden, cout, stride, ds, hw) -> module
    stages: tuple[tuple[Row, ...], ...]
    head: Head


@dataclass(frozen=True)
class ConvUnit:
    """A VGG layer made of layer tokens, e.g. ("c3+b", "bn", "relu")."""

    ops: tuple[str, ...]

    def build(self, cin: int, cout: int, hw: tuple[int, int]) -> nn.Module:
        return build_ops(self.ops, cin, cout, hw=hw)


@dataclass(frozen=True)
class FireUnit:
    """A VGG layer of width l as a Fire module: squeeze l/8, expand1x1 l/2, expand3x3 l/2."""

    squeeze: tuple[str, ...]
    expand1: tuple[str, ...]
    expand3: tuple[str, ...]
    post: tuple[str, ...] = ()

    def build(self, cin: int, cout: int, hw: tuple[int, int]) -> nn.Module:
        return Fire(cin, cout // 8, cout // 2, cout // 2, squeeze_ops=self.squeeze, expand1_ops=self.expand1,
                    expand3_ops=self.expand3, post_ops=self.post, hw=hw)


@dataclass(frozen=True)
class VGGSpec:
    """VGG-19 'E' with every conv layer built by `unit`, [SE after each unit], and a head."""

    unit: ConvUnit | FireUnit
    head: Head
    drop_last_pool: bool = True
    se_ratio: int | None = None
    cfg: tuple[int | str, ...] = VGG19_CFG
