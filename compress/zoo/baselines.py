"""Baselines from the other seed documents, built from torchvision's own model code.

- resnet18: torchvision ResNet-18 with the usual CIFAR stem (3x3 stride-1 conv, no max-pool), 11.17 M parameters.
- vgg16-bn: torchvision's VGG-16-BN features + Linear(512, 512) -> BN1d -> ReLU -> Linear(512, classes), the
  classifier of the ResNet-18/VGG-16 compression study (14.99 M). That study had no activation between its two
  Linear layers (they collapse into one linear map); we add the ReLU, which changes no count.
- micronet-densenet: a DenseNet-BC (growth 12) whose 3x3 convs are grouped 2/3/3 per dense block, after the
  MicroNet-challenge write-up (about 110 k parameters, CIFAR stem).
"""

from __future__ import annotations

from torch import nn
from torchvision.models import DenseNet, resnet18
from torchvision.models.vgg import cfgs, make_layers

from .registry import register


def cifar_resnet18(num_classes: int, in_chans: int) -> nn.Module:
    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def cifar_vgg16_bn(num_classes: int, in_chans: int) -> nn.Module:
    features = make_layers(cfgs["D"], batch_norm=True)
    if in_chans != 3:
        features[0] = nn.Conv2d(in_chans, 64, 3, padding=1)
    classifier = nn.Sequential(nn.Flatten(1), nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                               nn.Linear(512, num_classes))
    return nn.Sequential(features, classifier)


MICRONET_GROUPS = (2, 3, 3)


def micronet_densenet(num_classes: int, in_chans: int) -> nn.Module:
    model = DenseNet(growth_rate=12, block_config=(4, 6, 8), num_init_features=24, bn_size=4, num_classes=num_classes)
    model.features.conv0 = nn.Conv2d(in_chans, 24, 3, 1, 1, bias=False)
    model.features.pool0 = nn.Identity()
    for block, groups in zip((model.features.denseblock1, model.features.denseblock2, model.features.denseblock3),
                             MICRONET_GROUPS):
        for layer in block.values():
            old = layer.conv2
            layer.conv2 = nn.Conv2d(old.in_channels, old.out_channels, 3, padding=1, groups=groups, bias=False)
            nn.init.kaiming_normal_(layer.conv2.weight)
    return model


register("resnet18", cifar_resnet18, family="baseline", techniques=(),
         summary="torchvision ResNet-18, CIFAR stem (3x3 stride 1, no max-pool)")
register("vgg16-bn", cifar_vgg16_bn, family="baseline", techniques=(),
         summary="torchvision VGG-16-BN features + 512-512-classes classifier (compression study)")
register("micronet-densenet", micronet_densenet, family="baseline", techniques=("dense", "grouped-conv"),
         summary="DenseNet-BC, growth 12, 3x3 convs grouped 2/3/3 (MicroNet-style, ~110 k parameters)")
