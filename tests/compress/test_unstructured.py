"""The paper's pruning arithmetic: the non-zero counts per step must match docs/paper-spec.md §4.5 exactly."""

import pytest
import torch
from torch import nn

from edgecnn.compress.methods.unstructured import (conv_weight_counts, expected_nonzero, make_permanent,
                                                    nonzero_count, prune_step)
from edgecnn.compress.zoo import count_params, get_model

# paper-spec.md §4.5 (CIFAR-10, 3 input channels): step 0 is the total parameter count, then 20 % steps
PAPER = {
    "resnet101-exp13": [150715, 105273, 84218, 67374, 53899, 43119, 34495, 27596, 22077, 17662, 14130],
    "resnet101-exp11": [400115, 304678, 243742, 194994, 155995, 124796, 99837, 79870, 63896, 51117, 40894],
    "resnet101-exp1": [42512970, 33930189, 27148247, 21722694, 17382251, 13909897, 11132014, 8909707, 7131862,
                       5709586, 4571765],
}


@pytest.mark.parametrize("name", PAPER)
def test_nonzero_counts_match_the_paper_step_by_step(name):
    model = get_model(name, 10, 3)
    counts = [count_params(model)]
    for _ in range(10):
        prune_step(model, 0.2)
        counts.append(nonzero_count(model))
    assert counts == PAPER[name]
    conv, _ = conv_weight_counts(get_model(name, 10, 3))
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    assert expected_nonzero(conv, linear, 10) == PAPER[name][1:]


def test_masks_become_plain_weights_with_the_same_zeros():
    model = get_model("resnet101-exp13", 10, 3)
    prune_step(model, 0.2)
    prune_step(model, 0.2)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        before = model(x)
    kept, total = conv_weight_counts(model)
    make_permanent(model)
    assert not any(k.endswith("_mask") or k.endswith("_orig") for k in model.state_dict())
    zeros = sum(int((m.weight == 0).sum()) for m in model.modules() if type(m) is nn.Conv2d)
    assert zeros >= total - kept
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)
    assert set(model.state_dict()) == set(get_model("resnet101-exp13", 10, 3).state_dict())
