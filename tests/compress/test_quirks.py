"""The paper's quirks that change behaviour are reproduced, so that faithful numbers stay faithful."""

import torch

from edgecnn.compress.zoo import get_model


def test_relu6_head_bounds_the_logits():
    torch.manual_seed(0)
    for name in ("exp7", "exp13"):
        model = get_model(name).eval()
        with torch.no_grad():
            logits = model(torch.randn(8, 3, 32, 32) * 10)
        assert logits.min() >= 0 and logits.max() <= 6


def test_vgg_relu_head_gives_non_negative_logits():
    model = get_model("vgg19-exp9").eval()
    with torch.no_grad():
        assert model(torch.randn(4, 3, 32, 32)).min() >= 0


def test_vgg_exp2_applies_dropout_to_the_logits():
    torch.manual_seed(0)
    model = get_model("vgg19-exp2")
    assert isinstance(model.head[-1], torch.nn.Dropout)
    model.train()
    logits = model(torch.randn(16, 3, 32, 32))
    assert (logits == 0).float().mean() > 0.2  # dropout zeroes about half the logits in training


def test_baseline_head_is_plain_linear():
    logits = get_model("exp1").eval()(torch.randn(4, 3, 32, 32))
    assert logits.min() < 0  # no activation on the logits
