"""Structured pruning (Torch-Pruning) on every zoo variant: dependency-correct, runnable, smaller, exportable.

Every prunable variant is pruned and checked exact, its ResNets at a quarter of their depth (tests/conftest.py:
the same blocks, so the same couplings); the pruned model is exported to ONNX and TFLite on one variant of each
block family (a pruned graph's conversion depends on its blocks' shapes, not on how many there are), to keep the
suite inside its CI budget. SHUFFLED lists the variants whose every
channel group passes through a channel shuffle: they are left whole, and the CLI says so."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from edgecnn.compress.methods.structured import classifier_layer, make_pruner, prunable_roots
from edgecnn.compress.zoo import count_mflops, count_params, get_model, list_models
from edgecnn.compress.zoo.measure import settle_batchnorm
from edgecnn.errors import EdgecnnError
from edgecnn.export import onnx as onnx_format
from edgecnn.export import tflite as tflite_format
from edgecnn.export.runner import open_model

DICE_MODELS = ["resnet101-exp15", "vgg19-exp13"]
SHUFFLED = ["vgg19-exp6", "vgg19-exp7", "vgg19-exp8", "vgg19-exp12"]
MODELS = [name for name in list_models() if name not in DICE_MODELS + SHUFFLED]
# one of each family: torchvision ResNet, DenseNet + grouped convs, plain VGG, Fire, depthwise separable,
# ghost modules + SE, inverted bottleneck
EXPORT_CHECKED = ["resnet18", "micronet-densenet", "vgg16-bn", "vgg19-exp1", "vgg19-exp3", "resnet101-exp11",
                  "vgg19-exp9"]


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
def test_structured_pruning_is_exact_on_zeroed_channels_and_exports(name, tmp_path, zoo_model):
    model = zoo_model(name)
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

    if name not in EXPORT_CHECKED:
        return
    onnx_format.export_fp32(model, tmp_path / "m.onnx", 1, {"model": name})
    tflite_format.export_fp32(model, tmp_path / "m.tflite", 1)
    for path in (tmp_path / "m.onnx", tmp_path / "m.tflite"):
        logits = open_model(str(path), threads=1).predict(example.numpy())
        assert np.abs(logits - pruned.numpy()).max() <= 2e-4, path.name


@pytest.mark.parametrize("name", SHUFFLED)
def test_variants_shuffled_everywhere_have_nothing_to_prune(name):
    model = get_model(name, 10, 1)
    assert prunable_roots(model, torch.randn(1, 1, 32, 32)) == {}


@pytest.mark.parametrize("name", DICE_MODELS)
def test_models_with_dice_are_refused_with_a_clear_error(name):
    with pytest.raises(EdgecnnError, match="does not support models with DiCE units"):
        make_pruner(get_model(name, 10, 1), torch.randn(1, 1, 32, 32), 0.3)
