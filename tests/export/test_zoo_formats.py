"""Every zoo variant converts, and each file, run by its own runtime, computes what the PyTorch model computes.

A ResNet is built shallow here (tests/conftest.py: each stage row keeps at most two of its blocks, the first with its
stride and projection and one repeat): the same blocks at a quarter of the depth, since a converter fails on an
operator pattern and every pattern lives in a block. The full-depth graphs are converted where a trained run is
exported (tests/export/test_reparam.py, tests/core/test_pipeline.py) and in every real export.

ncnn, whose conversion takes seconds, is checked on every variant. ONNX, TFLite and ExecuTorch take 5-40 s per
variant, so they are checked on one variant per block family: the fewest variants whose blocks together are every
block the zoo has, chosen from the zoo itself, so a new block joins the set by itself (ExecuTorch ran on all 31
variants until the suite outgrew its 30-minute budget; every one passed).
Every variant also passes strict torch.export, TFLite's first step (tests/compress/test_zoo_export.py), and ONNX's
own exporter runs on every trained run the tests export.

Weights are random but BatchNorm statistics are set from data first, so activations have the scale of a trained
network (with untouched running stats a 100-layer ResNet's logits reach 1e4 and an absolute bound means nothing).

The bound is max |logit difference| <= 1e-4. Where PyTorch's own float32 result is already further than 5e-5 from
the float64 result of the same model (vgg19-exp8 here: 1.04e-4, its small-variance BatchNorms amplify rounding),
two float32 implementations cannot be held to 1e-4 of each other, and the bound becomes twice that own error.

int8: ncnn and ExecuTorch on one variant per block family; ncnn layer by layer and end to end, ExecuTorch end to end
(see those tests). ExecuTorch int8 on a trained model: test_executorch_format.py.
"""

from functools import cache

import numpy as np
import pytest
import torch

from edgecnn.compress.zoo import get_model, list_models, settle_batchnorm
from edgecnn.export import executorch_format
from edgecnn.export import ncnn_format
from edgecnn.export import onnx as onnx_format
from edgecnn.export import tflite as tflite_format
from edgecnn.export.runner import open_model


@pytest.fixture
def settled(zoo_model):
    """settled(name) -> the shallow variant (tests/conftest.py) with BatchNorm statistics set from data."""
    def build(name: str, in_chans: int = 1) -> torch.nn.Module:
        model = zoo_model(name, in_chans=in_chans)
        return settle_batchnorm(model, [torch.randn(16, in_chans, 32, 32) for _ in range(3)])
    return build


def blocks_of(name: str) -> frozenset[str]:
    model = get_model(name, num_classes=10, in_chans=1)
    own = {type(m).__name__ for m in model.modules()
           if type(m).__module__.startswith("edgecnn") and type(m).__name__ != "ZooModel"}
    return frozenset(own or {"plain torch layers"})


@cache
def one_per_block_family() -> tuple[str, ...]:
    """Greedy set cover of the zoo's block classes, cheapest variant first among equals (parameters)."""
    blocks = {name: blocks_of(name) for name in list_models()}
    size = {name: sum(p.numel() for p in get_model(name, num_classes=10, in_chans=1).parameters()) for name in blocks}
    left, chosen = set().union(*blocks.values()), []
    while left:
        best = max(blocks, key=lambda n: (len(blocks[n] & left), -size[n]))
        chosen.append(best)
        left -= blocks[best]
    return tuple(sorted(chosen))


def test_the_family_cover_holds_every_block():
    chosen = one_per_block_family()
    assert set().union(*(blocks_of(n) for n in chosen)) == set().union(*(blocks_of(n) for n in list_models()))
    assert len(chosen) < len(list_models()) / 2


def reference(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, float]:
    with torch.no_grad():
        expected = model(x).numpy()
        own_error = np.abs(expected - model.double()(x.double()).numpy()).max()
        model.float()
    return expected, 1e-4 if own_error <= 5e-5 else 2 * own_error


@pytest.mark.parametrize("name", list_models())
def test_ncnn_fp32_matches_pytorch(name, tmp_path, settled):
    model = settled(name)
    x = torch.randn(3, 1, 32, 32)
    expected, bound = reference(model, x)
    ncnn_format.export_fp32(model, tmp_path / "m.ncnn", 1)
    ncnn_model = open_model(str(tmp_path / "m.ncnn"), threads=1)
    assert ncnn_model.input_shape() == [1, 1, 32, 32]
    assert np.abs(ncnn_model.predict(x.numpy()) - expected).max() <= bound


#: variants whose graph XNNPACK does not take whole: these operators run in ExecuTorch's portable kernels between
#: delegate calls (DenseNet's many-input concatenations, an average pool of resnet101-exp15)
OUTSIDE_XNNPACK = {"micronet-densenet": {"aten::cat"}, "resnet101-exp15": {"aten::avg_pool2d"}}


def outside_delegates(path) -> set[str]:
    return {op.name for plan in executorch_format.read_program(path).execution_plan for op in plan.operators}


@pytest.mark.parametrize("name", one_per_block_family())
def test_executorch_fp32_matches_pytorch(name, tmp_path, settled):
    model = settled(name)
    x = torch.randn(3, 1, 32, 32)
    expected, bound = reference(model, x)
    executorch_format.export_fp32(model, tmp_path / "m.pte", 1)
    assert outside_delegates(tmp_path / "m.pte") == OUTSIDE_XNNPACK.get(name, set())
    if name not in OUTSIDE_XNNPACK:
        assert executorch_format.count_ops(tmp_path / "m.pte") == 1  # the whole graph in one XNNPACK delegate
    assert np.abs(open_model(str(tmp_path / "m.pte"), threads=1).predict(x.numpy()) - expected).max() <= bound


@pytest.mark.parametrize("name", one_per_block_family())
def test_onnx_and_tflite_fp32_match_pytorch(name, tmp_path, settled):
    model = settled(name)
    x = torch.randn(3, 1, 32, 32)
    expected, bound = reference(model, x)

    info = onnx_format.export_fp32(model, tmp_path / "m.onnx", 1, {"model": name})
    assert info["nodes"] > 0
    onnx_logits = open_model(str(tmp_path / "m.onnx"), threads=1).predict(x.numpy())  # batch 3: dynamic batch works
    assert np.abs(onnx_logits - expected).max() <= bound
    assert onnx_format.read_metadata(tmp_path / "m.onnx")["model"] == name

    tflite_format.export_fp32(model, tmp_path / "m.tflite", 1)
    assert np.abs(open_model(str(tmp_path / "m.tflite"), threads=1).predict(x.numpy()) - expected).max() <= bound


def centered_relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """|got - expected| / |expected| over a batch of logits, each row less its mean (a shared offset is no error)."""
    got, expected = got - got.mean(1, keepdims=True), expected - expected.mean(1, keepdims=True)
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


@pytest.mark.parametrize("name", one_per_block_family())
def test_ncnn_int8_holds_layer_by_layer_and_end_to_end(name, tmp_path, settled):
    """Each layer the file keeps in int8 stays within the fallback bound on images it was not calibrated on, the file
    answers one input the same way twice, and its logits stay near the model's. Top-1 agreement is no measure here:
    a random network's logits are near ties, and int8 noise that a trained one shrugs off (98.9-99.4 % agreement on
    trained exports, docs/export.md) flips them. Errors compound with depth in a random net: 0.06-0.47 measured on
    these seven; a layer that computes garbage puts it above 1."""
    from edgecnn.export.reparam import reparameterize

    model, _ = reparameterize(settled(name), None, "fold")
    calibration = torch.randn(40, 1, 32, 32).numpy()
    ncnn_format.export_fp32(model, tmp_path / "m.fp32.ncnn", 1)
    details = ncnn_format.export_int8(tmp_path / "m.fp32.ncnn", tmp_path / "m.int8.ncnn", calibration)
    assert details["int8_layers"] > 0

    param, weights = ncnn_format.read_container(tmp_path / "m.fp32.ncnn")
    layers = ncnn_format.parse_param(param)
    ncnn_format.split_weights(layers, weights)
    net = ncnn_format._net(param, weights)
    input_blob, _ = ncnn_format.io_blobs(layers)
    scales = ncnn_format.activation_scales(layers, net, calibration, input_blob)
    unseen = ncnn_format.layer_errors(layers, net, scales, torch.randn(8, 1, 32, 32).numpy(), input_blob)
    int8 = {layer: error for layer, error in unseen.items() if layer not in details["fp32_fallback_layers"]}
    assert len(int8) == details["int8_layers"] and max(int8.values()) <= ncnn_format.FALLBACK_ERROR, int8

    x = torch.randn(50, 1, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    runtime = open_model(str(tmp_path / "m.int8.ncnn"), threads=1)
    got = runtime.predict(x.numpy())
    assert np.array_equal(got, runtime.predict(x.numpy()))
    assert centered_relative_error(got, expected) <= 0.6, details


@pytest.mark.parametrize("name", one_per_block_family())
def test_executorch_int8_holds_end_to_end(name, tmp_path, settled):
    """PT2E int8 (XNNPACKQuantizer, per-channel) lowered to XNNPACK: one delegate, the same answer twice, and logits
    near the model's by the bound of the ncnn test above (a random net's near-tied logits make top-1 no measure)."""
    from edgecnn.export.reparam import reparameterize

    model, _ = reparameterize(settled(name), None, "fold")
    details = executorch_format.export_int8(model, tmp_path / "m.int8.pte", 1, torch.randn(40, 1, 32, 32).numpy())
    assert details["calibration_images"] == 40
    assert outside_delegates(tmp_path / "m.int8.pte") <= OUTSIDE_XNNPACK.get(name, set())
    x = torch.randn(50, 1, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    runtime = open_model(str(tmp_path / "m.int8.pte"), threads=1)
    got = runtime.predict(x.numpy())
    assert np.array_equal(got, runtime.predict(x.numpy()))
    assert 0 < centered_relative_error(got, expected) <= 0.6
