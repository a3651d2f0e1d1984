"""The ResNet-101 line of Sobolewski & Szyc (exp 1-15). Structures: docs/paper-spec.md section 1.

Every variant keeps torchvision's ResNet-101 skeleton (stem without max-pool, four stages, GAP head) and changes
the stem, the block, the trunk widths or the head. Block rows read R(in, hidden, out, stride, ds, n).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from ..layers import (DiCEBottleneck, GhostBottleneck, InvertedResidual, ResidualFire, ResNetBottleneck,
                      ShuffleBottleneck)
from .registry import register
from .spec import Head, HeadConv, R, ResNetSpec

CONV_STEM = ("c3", "bn", "relu")
DWS_STEM = ("dws", "bn", "relu")
FC = Head()  # GAP -> Linear(width, classes)
CONV_LOGITS = HeadConv(("pw", "bn", "relu6"))  # 1x1 conv -> classes, BN, ReLU6: the paper's "no FC" head

# torchvision's resnet101 layout: 3/4/23/3 bottlenecks, widths 64..512, outputs 4x; stride on each stage's first block.
BOTTLENECK_TRUNK = (
    (R(64, 64, 256, ds=True), R(256, 64, 256, n=2)),
    (R(256, 128, 512, 2, True), R(512, 128, 512, n=3)),
    (R(512, 256, 1024, 2, True), R(1024, 256, 1024, n=22)),
    (R(1024, 512, 2048, 2, True), R(2048, 512, 2048, n=2)),
)
# exp 6-9: narrow 10/22/42/86 trunk, downsampling in the LAST block of stages 1-3.
INVERTED_TRUNK = (
    (R(64, 64, 10, ds=True), R(10, 64, 10), R(10, 64, 22, 2, True)),
    (R(22, 128, 22, n=3), R(22, 128, 42, 2, True)),
    (R(42, 256, 42, n=22), R(42, 256, 86, 2, True)),
    (R(86, 512, 86, n=2), R(86, 512, 512, ds=True)),
)
# exp 10-12 and 15: same widths, downsampling back in the FIRST block of stages 2-4.
GHOST_TRUNK = (
    (R(64, 64, 10, ds=True), R(10, 64, 10, n=2)),
    (R(10, 64, 22, 2, True), R(22, 128, 22, n=3)),
    (R(22, 128, 42, 2, True), R(42, 256, 42, n=22)),
    (R(42, 512, 86, 2, True), R(86, 512, 86, n=2)),
)
# exp 11/12: 16-channel stem, two blocks in layer4.
SMALL_GHOST_TRUNK = (
    (R(16, 64, 10, ds=True), R(10, 64, 10, n=2)),
    *GHOST_TRUNK[1:3],
    (R(42, 512, 86, 2, True), R(86, 512, 86)),
)
# exp 13/14: widths 16/24/40/88 so that half of each ghost module's output divides into 4 groups.
SHUFFLE_GHOST_TRUNK = (
    (R(16, 64, 16, ds=True), R(16, 64, 16, n=2)),
    (R(16, 64, 24, 2, True), R(24, 128, 24, n=3)),
    (R(24, 128, 40, 2, True), R(40, 256, 40, n=22)),
    (R(40, 512, 88, 2, True), R(88, 512, 88)),
)

EXP1 = ResNetSpec(CONV_STEM, 64, ResNetBottleneck, BOTTLENECK_TRUNK, FC)
EXP2 = replace(EXP1, block=ResidualFire)
EXP3 = replace(EXP1, stem=("nx1", "bn", "relu"), block=partial(ResNetBottleneck, conv2="nx1"))
EXP4 = replace(EXP1, stem=DWS_STEM, block=partial(ResNetBottleneck, conv2="dw"))
EXP5 = replace(EXP4, block=ShuffleBottleneck)
EXP6 = ResNetSpec(DWS_STEM, 64, InvertedResidual, INVERTED_TRUNK, Head(convs=(HeadConv(("pw", "bn", "relu6"), 2048),)))
EXP7 = replace(EXP6, head=Head(convs=(CONV_LOGITS,), fc=False))
EXP8 = replace(EXP6, stages=(*INVERTED_TRUNK[:3], INVERTED_TRUNK[3][:1]),
               head=Head(convs=(HeadConv(("pw", "bn", "relu6"), 512), CONV_LOGITS), fc=False))
EXP9 = replace(EXP8, stem_width=10, stages=((R(10, 64, 10, ds=True), *INVERTED_TRUNK[0][1:]), *EXP8.stages[1:]))
EXP10 = ResNetSpec(DWS_STEM, 64, GhostBottleneck, GHOST_TRUNK, Head(fc_bias=False))
EXP11 = replace(EXP10, stem_width=16, stages=SMALL_GHOST_TRUNK, head=Head(convs=(CONV_LOGITS,), fc=False))
EXP12 = replace(EXP11, block=partial(GhostBottleneck, se_ratio=4))
EXP13 = replace(EXP11, stages=SHUFFLE_GHOST_TRUNK,
                block=partial(GhostBottleneck, primary_groups=4, stride_dw="strided"))
EXP14 = replace(EXP13, block=partial(EXP13.block, se_ratio=4))
EXP15 = replace(EXP10, block=DiCEBottleneck)

RELU6_LOGITS = "ReLU6 on the logits (1x1 conv head + BN + ReLU6, then GAP): logits lie in [0, 6]"
VARIANTS = {
    1: (EXP1, (), "baseline: torchvision Bottleneck, CIFAR stem (3x3, no max-pool)", ()),
    2: (EXP2, ("fire",), "Fire blocks (no BN inside) with residual shortcuts", (
        "Fire path has no BatchNorm and no activation after the residual add",)),
    3: (EXP3, ("nx1",), "3x3 convs (and stem) split into 3x1 + 1x3", ()),
    4: (EXP4, ("dwconv",), "bottleneck 3x3 -> depthwise 3x3; depthwise-separable stem", ()),
    5: (EXP5, ("dwconv", "shuffle"), "grouped 1x1 (g=4) + channel shuffle, depthwise 3x3", ()),
    6: (EXP6, ("inv-bottleneck",), "inverted residuals, 10/22/42/86 trunk, PW 512->2048 before GAP", (
        "downsampling in the LAST block of stages 1-3", "no activation after the residual add")),
    7: (EXP7, ("no-fc", "inv-bottleneck"), "exp 6 with a 1x1 conv classifier instead of FC", (RELU6_LOGITS,)),
    8: (EXP8, ("no-fc", "inv-bottleneck", "opt-before-gap"), "exp 7 minus the 86->512 block; PW 86->512->classes",
        (RELU6_LOGITS,)),
    9: (EXP9, ("no-fc", "inv-bottleneck", "opt-before-gap", "less-channels"), "exp 8 with a 10-channel stem", (
        RELU6_LOGITS, "layer1[0] keeps a needless 10->10 projection shortcut")),
    10: (EXP10, ("inv-bottleneck", "ghost"), "ghost bottlenecks, downsampling in the first block of stages 2-4", (
        "stride-1 depthwise + BN layer kept in layer1[0]", "FC without bias")),
    11: (EXP11, ("no-fc", "inv-bottleneck", "opt-before-gap", "less-channels", "ghost"),
         "exp 10 with a 16-channel stem, 2 blocks in layer4, 1x1 conv classifier", (
             RELU6_LOGITS, "stride-1 depthwise + BN layer kept in layer1[0]")),
    12: (EXP12, ("no-fc", "inv-bottleneck", "opt-before-gap", "less-channels", "ghost", "se"),
         "exp 11 + squeeze-and-excitation (r=4) in every block", (RELU6_LOGITS,)),
    13: (EXP13, ("no-fc", "shuffle", "inv-bottleneck", "opt-before-gap", "less-channels", "ghost"),
         "exp 11 with grouped (g=4) + shuffled ghost primaries, 16/24/40/88 trunk (the paper's headline model)", (
             RELU6_LOGITS,)),
    14: (EXP14, ("no-fc", "shuffle", "inv-bottleneck", "opt-before-gap", "less-channels", "ghost", "se"),
         "exp 13 + squeeze-and-excitation (r=4)", (RELU6_LOGITS,)),
    15: (EXP15, ("inv-bottleneck", "dice", "se"), "1x1 expand + DiCE unit (its gate counts as SE)", (
        "each downsampling block builds an unused depthwise+BN 'downsample' (8,448 dead parameters)",
        "DiCE is built for fixed H x W (32/16/8/4); the 1x1 fusion conv pads by 1, undone by a valid 3x3",
        "FC without bias")),
}

for number, (spec, techniques, summary, quirks) in VARIANTS.items():
    register(f"resnet101-exp{number}", spec, family="resnet101", techniques=techniques, summary=summary,
             quirks=quirks, alias=f"exp{number}")
