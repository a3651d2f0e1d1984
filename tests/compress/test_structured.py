"""Structured pruning (Torch-Pruning) on every zoo variant: dependency-correct, runnable, smaller."""

import copy

import pytest
import torch
from torch import nn

from edgecnn.compress.methods.structured import classifier_layer, make_pruner
from edgecnn.compress.zoo import count_mflops, count_params, get_model, list_models
from edgecnn.compress.zoo.measure import settle_batchnorm

MODELS = list_models()


def _zero_and_prune(model: nn.Module, example: torch.Tensor, ratio: float) -> tuple[torch.Tensor, int]:
    """Prune `model`, and zero the same channels (conv/linear rows, BatchNorm affine) in an unpruned copy. A channel
    that carries zeros contributes nothing, so the pruned model must compute what the zeroed copy computes: a wrong
    coupling (a channel removed on one side of an add, concat or shuffle but not the other) changes the logits or
    the shapes. Returns (the zeroed copy's logits, number of groups pruned)."""
    zeroed = copy.deepcopy(model)
    names = {module: name for name, module in model.named_modules()}
    original = {}  # module -> original indices of the channels it still has (a concat's BN is pruned by many groups)
    pruner = make_pruner(model, example, ratio)
    groups = 0
    with torch.no_grad():
        for group in pruner.step(interactive=True):
            chosen: dict[nn.Module, set[int]] = {}
            for dep, idxs in group:
                if pruner.DG.is_out_channel_pruning_fn(dep.handler) and hasattr(dep.target.module, "weight"):
                    chosen.setdefault(dep.target.module, set()).update(int(i) for i in idxs)
            for module, idxs in chosen.items():
                kept = original.setdefault(module, list(range(module.weight.shape[0])))
                twin = zeroed.get_submodule(names[module])
                rows = [kept[i] for i in sorted(idxs)]
                twin.weight[rows] = 0
                if getattr(twin, "bias", None) is not None:
                    twin.bias[rows] = 0
                original[module] = [c for i, c in enumerate(kept) if i not in idxs]
            group.prune()
            groups += 1
        return zeroed(example), groups


@pytest.mark.parametrize("name", MODELS)
def test_structured_pruning_is_exact_on_zeroed_channels(name):
    torch.manual_seed(0)
    model = get_model(name, 10, 1)
    example = torch.randn(4, 1, 32, 32)
    settle_batchnorm(model, [torch.randn(8, 1, 32, 32)])
    params, mflops = count_params(model), count_mflops(model, 1)
    reference, groups = _zero_and_prune(model, example, 0.3)
    with torch.no_grad():
        pruned = model(example)
    assert groups > 0, "nothing was prunable"
    assert pruned.shape == (4, 10)
    torch.testing.assert_close(pruned, reference, atol=1e-4, rtol=1e-4)
    assert count_params(model) < params and count_mflops(model, 1) < mflops
    assert classifier_layer(model).weight.shape[0] == 10
