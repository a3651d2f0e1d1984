"""Spec -> nn.Module. The only place that wires stems, stages and heads together."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..layers import SqueezeExcite, build_ops
from .spec import Head, ResNetSpec, VGGSpec


class ZooModel(nn.Sequential):
    """A zoo network: named stages run in order. Plain Sequential so export and pruning tools see every layer."""


def build_head(head: Head, in_channels: int, num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_channels
    for conv in head.convs:
        out = num_classes if conv.out is None else conv.out
        layers.append(build_ops(conv.ops, width, out))
        width = out
    if head.pool:
        layers.append(nn.AdaptiveAvgPool2d(1))
    layers.append(nn.Flatten(1))
    for hidden in head.hidden:
        layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5)]
        width = hidden
    if head.fc:
        layers.append(nn.Linear(width, num_classes, bias=head.fc_bias))
    elif width != num_classes:
        raise ValueError(f"head without fc ends with {width} channels, not num_classes={num_classes}")
    if head.logit_dropout:
        layers.append(nn.Dropout(head.logit_dropout))
    return nn.Sequential(*layers)


def build_resnet(spec: ResNetSpec, num_classes: int, in_chans: int = 3, input_size: int = 32) -> ZooModel:
    parts: OrderedDict[str, nn.Module] = OrderedDict()
    parts["stem"] = build_ops(spec.stem, in_chans, spec.stem_width)
    size, width = input_size, spec.stem_width
    for index, rows in enumerate(spec.stages, start=1):
        blocks = []
        for row in rows:
            if row.cin != width:
                raise ValueError(f"layer{index}: row expects {row.cin} input channels, trunk has {width}")
            for i in range(row.n):
                stride = row.stride if i == 0 else 1
                size //= stride
                cin = row.cin if i == 0 else row.cout
                blocks.append(spec.block(cin, row.hidden, row.cout, stride, row.ds and i == 0, (size, size)))
            width = row.cout
        parts[f"layer{index}"] = nn.Sequential(*blocks)
    parts["head"] = build_head(spec.head, width, num_classes)
    return ZooModel(parts)


def build_vgg(spec: VGGSpec, num_classes: int, in_chans: int = 3, input_size: int = 32) -> ZooModel:
    layers: list[nn.Module] = []
    size, width = input_size, in_chans
    cfg = spec.cfg[:-1] if spec.drop_last_pool else spec.cfg
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            size //= 2
            continue
        layers.append(spec.unit.build(width, item, (size, size)))
        if spec.se_ratio:
            layers.append(SqueezeExcite(item, spec.se_ratio))
        width = item
    return ZooModel(OrderedDict(features=nn.Sequential(*layers), head=build_head(spec.head, width, num_classes)))
