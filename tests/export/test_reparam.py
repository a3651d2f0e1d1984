"""Export-time re-parameterisation (export/reparam.py): every variant keeps its fp32 logits within 1e-5, every
ghost module's BatchNorm is folded away, and the rewrite leaves the original model untouched."""

import copy

import pytest
import torch
from torch import nn

from edgecnn.compress.layers.ghost import GhostModule
from edgecnn.compress.zoo import get_model, list_models, settle_batchnorm
from edgecnn.export.reparam import FoldedGhost, fold_ghost, reparameterize


def trained_like(name: str, in_chans: int = 3) -> nn.Module:
    """Random weights with BatchNorm affines and statistics of a trained network's kind (not the identity init),
    so both the scale and the shift of every fold are exercised."""
    torch.manual_seed(0)
    model = get_model(name, 10, in_chans)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.3, 1.5)
            nn.init.normal_(module.bias, 0.0, 0.3)
    return settle_batchnorm(model, [torch.randn(16, in_chans, 32, 32) for _ in range(3)])


@pytest.mark.parametrize("name", list_models())
def test_rewrite_keeps_the_logits(name):
    model = trained_like(name)
    ghosts = sum(isinstance(m, GhostModule) for m in model.modules())
    x = torch.randn(8, 3, 32, 32)
    folded, counts = reparameterize(model, x[:1])
    assert counts == {"ghost_folded": ghosts, "ghost_kept": 0}
    assert not any(isinstance(m, GhostModule) for m in folded.modules())
    with torch.no_grad():
        reference, rewritten = model(x), folded(x)
        exact = copy.deepcopy(model).double()(x.double())
    # 1e-5, or twice the model's own float32 error where that is larger: the folded weights are rounded to float32,
    # and a random-weight VGG-19 amplifies any rounding ~1000x (its own float32 result is up to 6e-5 from float64)
    own_error = (reference.double() - exact).abs().max().item()
    assert (reference - rewritten).abs().max().item() <= max(1e-5, 2 * own_error)
    assert any(isinstance(m, GhostModule) for m in model.modules()) == (ghosts > 0)  # the original is unchanged


def test_fold_is_exact_on_the_border_and_through_the_shuffle():
    torch.manual_seed(1)
    module = GhostModule(16, 32, act="relu6", primary_groups=4)
    nn.init.uniform_(module.bn.weight, 0.5, 2.0)
    nn.init.normal_(module.bn.bias, 0.0, 1.0)
    module.bn.running_mean.normal_(0.0, 1.0)
    module.bn.running_var.uniform_(0.5, 2.0)
    module.eval()
    x = torch.randn(4, 16, 7, 5)
    folded = fold_ghost(module, (7, 5))
    assert isinstance(folded, FoldedGhost) and folded.border is not None
    assert folded.border[..., 1:-1, 1:-1].abs().max() == 0  # only the border needs the correction map
    with torch.no_grad():
        assert torch.allclose(module(x), folded(x), atol=1e-5, rtol=0)


def test_a_vanishing_primary_scale_keeps_the_batchnorm():
    module = GhostModule(8, 16).eval()
    with torch.no_grad():
        module.bn.weight[12] = 0.0  # a primary channel the network switched off
    assert fold_ghost(module, (8, 8)) is None


def test_folded_ghost_model_has_no_float_batchnorm_in_its_int8_onnx(tmp_path):
    import collections

    import numpy as np
    import onnx

    from edgecnn.export.onnx import export_fp32, quantize_int8

    model = trained_like("vgg19-exp9")
    calibration = np.random.default_rng(0).standard_normal((20, 3, 32, 32)).astype(np.float32)
    counts = {}
    for label, candidate in (("as trained", model), ("folded", reparameterize(model, torch.zeros(1, 3, 32, 32))[0])):
        export_fp32(candidate, tmp_path / f"{label}.onnx", 3, {})
        quantize_int8(tmp_path / f"{label}.onnx", tmp_path / f"{label}.int8.onnx", calibration)
        graph = onnx.load(str(tmp_path / f"{label}.int8.onnx")).graph
        counts[label] = collections.Counter(node.op_type for node in graph.node)
    assert counts["as trained"]["BatchNormalization"] == 32  # one float island per ghost module
    assert counts["folded"]["BatchNormalization"] == 0
