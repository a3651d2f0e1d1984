"""The VGG-19 line of Sobolewski & Szyc (exp 1-13). Structures: docs/paper-spec.md section 2.

Every variant keeps VGG-19's configuration 'E' (16 conv layers, 5 max-pools) and swaps what each conv layer is;
from exp 2 on the last max-pool is dropped for global average pooling. Fire units of width l have a squeeze of
l/8 and two expands of l/2.
"""

from __future__ import annotations

from dataclasses import replace

from .registry import register
from .spec import ConvUnit, FireUnit, Head, HeadConv, VGGSpec

CONV_CLASSIFIER = Head(convs=(HeadConv(("pw+b", "bn", "relu")),), fc=False)  # 1x1 conv -> classes, BN, ReLU, GAP

EXP1 = VGGSpec(ConvUnit(("c3+b", "bn", "relu")), Head(pool=False, hidden=(4096, 4096)), drop_last_pool=False)
EXP2 = replace(EXP1, head=Head(logit_dropout=0.5), drop_last_pool=True)
EXP3 = replace(EXP2, unit=ConvUnit(("nx1", "bn", "relu")))
EXP4 = replace(EXP2, unit=ConvUnit(("dws", "bn", "relu")))
EXP5 = replace(EXP2, unit=FireUnit(squeeze=("pw+b", "dead-bn"), expand1=("pw+b", "bn", "relu"),
                                   expand3=("c3+b", "bn", "relu")))
EXP6 = replace(EXP2, unit=FireUnit(squeeze=("pw+b", "bn", "relu"), expand1=("pw+b", "bn"), expand3=("dw-mult", "bn"),
                                   post=("relu",)))
EXP7 = replace(EXP6, head=CONV_CLASSIFIER)
EXP8 = replace(EXP7, unit=FireUnit(squeeze=("gpw", "bn", "relu", "shuffle"), expand1=("gpw", "bn"),
                                   expand3=("dw-mult", "dead-bn"), post=("shuffle8", "relu")))
EXP9 = replace(EXP7, unit=FireUnit(squeeze=("ghost", "relu6"), expand1=("pw", "bn"), expand3=("ghost",), post=("relu",)),
               head=Head(convs=(HeadConv(("pw+b", "relu")),), fc=False))
EXP10 = replace(EXP9, unit=replace(EXP9.unit, expand3=("ghost-gpw",)))
EXP11 = replace(EXP10, se_ratio=4)
EXP12 = replace(EXP8, se_ratio=4)
EXP13 = replace(EXP7, unit=FireUnit(squeeze=("gpw-gcd", "bn", "relu", "shuffle"), expand1=("pw", "bn"),
                                    expand3=("dice",), post=("relu",)))

RELU_LOGITS = "ReLU on the logits (1x1 conv head, then GAP): logits are non-negative"
NO_HEAD_BN = "head lacks the BatchNorm of exp 7/8/12/13 (flag not passed in the paper's code)"
VARIANTS = {
    1: (EXP1, (), "baseline VGG-19-BN: 5 max-pools, 4096-4096 MLP classifier", ()),
    2: (EXP2, ("gap",), "last max-pool dropped, GAP -> Linear", ("Dropout(0.5) applied to the logits",)),
    3: (EXP3, ("gap", "nx1"), "every 3x3 conv split into 3x1 + 1x3", ("Dropout(0.5) applied to the logits",)),
    4: (EXP4, ("gap", "dwconv"), "every conv depthwise-separable", ("Dropout(0.5) applied to the logits",)),
    5: (EXP5, ("gap", "fire"), "every conv a Fire module", (
        "Dropout(0.5) applied to the logits",
        "squeeze BN + ReLU computed and discarded: squeeze -> expand is linear (1,376 dead parameters)")),
    6: (EXP6, ("gap", "dwconv", "fire"), "Fire with a depthwise (multiplier 4) 3x3 expand",
        ("Dropout(0.5) applied to the logits",)),
    7: (EXP7, ("gap", "dwconv", "fire", "no-fc"), "exp 6 with a 1x1 conv classifier", (RELU_LOGITS,)),
    8: (EXP8, ("gap", "dwconv", "fire", "no-fc", "shuffle"), "grouped 1x1 (g=4) + channel shuffle in the Fire", (
        RELU_LOGITS, "3x3-expand BN computed and discarded (its parameters still counted)")),
    9: (EXP9, ("gap", "dwconv", "fire", "no-fc", "ghost"), "ghost modules as squeeze and 3x3 expand", (
        RELU_LOGITS, NO_HEAD_BN)),
    10: (EXP10, ("gap", "dwconv", "fire", "no-fc", "shuffle", "ghost"), "exp 9 with grouped + shuffled ghost primaries",
         (RELU_LOGITS, NO_HEAD_BN)),
    11: (EXP11, ("gap", "dwconv", "fire", "no-fc", "shuffle", "ghost", "se"), "exp 10 + SE (r=4) after every Fire", (
        RELU_LOGITS, NO_HEAD_BN)),
    12: (EXP12, ("gap", "dwconv", "fire", "no-fc", "shuffle", "se"), "exp 8 + SE (r=4) after every Fire", (
        RELU_LOGITS, "3x3-expand BN computed and discarded (its parameters still counted)")),
    13: (EXP13, ("gap", "fire", "no-fc", "shuffle", "dice"), "Fire with a DiCE unit as the 3x3 expand", (
        RELU_LOGITS, "DiCE is built for the layer's fixed H x W (32/16/8/4/2)")),
}

for number, (spec, techniques, summary, quirks) in VARIANTS.items():
    register(f"vgg19-exp{number}", spec, family="vgg19", techniques=techniques, summary=summary, quirks=quirks)
