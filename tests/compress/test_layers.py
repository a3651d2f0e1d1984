"""Each block against the paper's per-block counts (paper-spec.md) and its defining behaviour."""

import pytest
import torch
from torch import nn

from edgecnn.compress.layers import (ChannelShuffle, DiCE, DiCEBottleneck, Discarded, FactorizedConv, Fire,
                                     GhostBottleneck, GhostModule, InvertedResidual, ResidualFire, ResNetBottleneck,
                                     ShuffleBottleneck, SqueezeExcite, StridedDiCE, build_ops, pointwise_groups)
from edgecnn.compress.zoo import count_params
from edgecnn.compress.zoo.spec import FireUnit
from edgecnn.compress.zoo import vgg19


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert ChannelShuffle(3)(x).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    assert torch.equal(ChannelShuffle(1)(x), x)


def test_pointwise_groups_rule():
    assert pointwise_groups(24) == 1 and pointwise_groups(25) == 4


def test_ghost_module_concat_order_is_cheap_then_primary():
    gm = GhostModule(8, 16).eval()
    nn.init.ones_(gm.bn.weight), nn.init.zeros_(gm.bn.bias)
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        primary = gm.primary(x)
        expected = torch.cat([gm.cheap(primary), primary], 1) / torch.sqrt(torch.tensor(1 + gm.bn.eps))
        torch.testing.assert_close(gm(x), expected)


def test_ghost_module_with_grouped_primary_has_a_shuffle():
    gm = GhostModule(40, 256, primary_groups=4)
    assert isinstance(gm.primary[1], ChannelShuffle) and gm.primary[0].groups == 4


@pytest.mark.parametrize("block,expected", [
    (InvertedResidual(42, 256, 42), 24_916),                                   # exp 6 typical
    (GhostBottleneck(42, 256, 42), 12_689),                                    # exp 10 typical
    (GhostBottleneck(40, 256, 40, primary_groups=4, stride_dw="strided"), 4_484),  # exp 13 typical
    (ShuffleBottleneck(1024, 256, 1024), 136_448),                             # exp 5 layer3
    (ResidualFire(1024, 256, 1024), 1_574_144),                                # exp 2 layer3
    (DiCEBottleneck(42, 256, 42, hw=(8, 8)), 84_068),                          # exp 15 typical
])
def test_block_parameter_counts(block, expected):
    assert count_params(block) == expected


def test_dice_projection_is_grouped_by_gcd():
    dice = DiCE(256, 42, 8, 8)
    assert dice.project[0].groups == 2 and count_params(dice.project[0]) == 48_384


@pytest.mark.parametrize("spec,expected", [(vgg19.EXP5.unit, 198_336), (vgg19.EXP6.unit, 52_928),
                                           (vgg19.EXP8.unit, 15_744), (vgg19.EXP9.unit, 43_552),
                                           (vgg19.EXP10.unit, 37_408)])
def test_vgg_fire_512_counts(spec: FireUnit, expected):
    assert count_params(spec.build(512, 512, (2, 2))) == expected


def test_se_adds_c2_over_2_and_scales_channels():
    se = SqueezeExcite(64, 4)
    assert count_params(se) == 64 * 64 // 2
    x = torch.randn(2, 64, 4, 4)
    y = se(x)
    ratio = y / x
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), atol=1e-5)  # one scale per channel
    assert ((ratio > 0) & (ratio < 1)).all()


def test_discarded_modules_are_counted_but_never_run():
    dead = Discarded(nn.BatchNorm2d(8))
    x = torch.randn(1, 8, 2, 2)
    assert count_params(dead) == 16 and dead(x) is x
    block = DiCEBottleneck(42, 512, 86, stride=2, ds=True, hw=(4, 4))
    block(torch.randn(2, 42, 8, 8)).sum().backward()
    assert all(p.grad is None for p in block.body.unused_downsample.parameters())
    assert count_params(block.body.unused_downsample) == 512 * 9 + 2 * 512


def test_vgg5_squeeze_bn_is_dead_so_squeeze_to_expand_is_linear():
    fire = vgg19.EXP5.unit.build(64, 64, (8, 8))
    assert isinstance(fire.squeeze[1], Discarded)
    x = torch.randn(1, 64, 8, 8)
    torch.testing.assert_close(fire.squeeze(x), fire.squeeze[0](x))


def test_factorized_conv_splits_the_stride():
    conv = FactorizedConv(8, 16, stride=2)
    assert conv.conv_nx1.kernel_size == (3, 1) and conv.conv_nx1.stride == (2, 1)
    assert conv.conv_1xn.kernel_size == (1, 3) and conv.conv_1xn.stride == (1, 2)
    assert conv(torch.randn(1, 8, 8, 8)).shape == (1, 16, 4, 4)
    assert count_params(FactorizedConv(3, 64)) == 603  # exp 3 stem


def test_resnet_bottleneck_conv2_swap():
    assert isinstance(ResNetBottleneck(64, 64, 256).conv2, nn.Conv2d)
    dw = ResNetBottleneck(256, 128, 512, stride=2, ds=True, conv2="dw")
    assert dw.conv2[0].groups == 128 and dw.conv2[0].stride == (2, 2)
    assert dw(torch.randn(1, 256, 8, 8)).shape == (1, 512, 4, 4)
    with pytest.raises(ValueError, match="4x"):
        ResNetBottleneck(64, 64, 100)


def test_ghost_bottleneck_stride_dw_policies():
    assert hasattr(GhostBottleneck(16, 64, 10, 1, ds=True).body, "dw")                         # exp 10-12 quirk
    assert not hasattr(GhostBottleneck(16, 64, 16, 1, ds=True, stride_dw="strided").body, "dw")  # exp 13/14
    assert GhostBottleneck(16, 64, 24, 2, ds=True, se_ratio=4)(torch.randn(1, 16, 8, 8)).shape == (1, 24, 4, 4)


def test_dice_runs_at_another_resolution_by_resizing():
    dice = DiCE(8, 16, 8, 8).eval()
    assert dice(torch.randn(1, 8, 8, 8)).shape == (1, 16, 8, 8)
    assert dice(torch.randn(1, 8, 12, 6)).shape == (1, 16, 12, 6)


def test_strided_dice_halves_resolution():
    assert StridedDiCE(64, 22, 16, 16)(torch.randn(2, 64, 32, 32)).shape == (2, 22, 16, 16)


def test_fire_concatenates_expands():
    fire = Fire(16, 4, 8, 8, squeeze_ops=("pw", "relu"), expand1_ops=("pw",), expand3_ops=("c3",), stride=2)
    assert fire(torch.randn(1, 16, 8, 8)).shape == (1, 16, 4, 4)


def test_build_ops_rejects_bad_token_lists():
    with pytest.raises(ValueError, match="unknown layer token 'conv9'"):
        build_ops(("conv9",), 8, 8)
    with pytest.raises(ValueError, match="no conv token"):
        build_ops(("bn",), 8, 16)
    with pytest.raises(ValueError, match="keeps the width"):
        build_ops(("dw",), 8, 16)
    with pytest.raises(ValueError, match="one conv token"):
        build_ops(("pw", "pw"), 8, 8)


def test_shuffle_token_uses_the_groups_of_the_conv_before_it():
    grouped = build_ops(("gpw", "bn", "relu", "shuffle"), 64, 32)
    assert isinstance(grouped[-1], ChannelShuffle) and grouped[-1].groups == 4
    ungrouped = build_ops(("gpw", "bn", "relu", "shuffle"), 16, 32)
    assert not any(isinstance(m, ChannelShuffle) for m in ungrouped)
