"""Every zoo variant converts, and each file, run by its own runtime, computes what the PyTorch model computes.

ONNX (checked, simplified) and ncnn convert every variant in seconds, so both are checked on all of them. TFLite
and ExecuTorch take up to a minute per ResNet-101 variant, so they are checked on one variant per block family:
the fewest variants whose blocks together are every block the zoo has (a converter fails on an operator pattern,
and every pattern lives in a block), chosen from the zoo itself, so a new block joins the set by itself; and a
ResNet there is built shallow: each stage row keeps at most two of its blocks (the first, with its stride and
projection, and one repeat), the same blocks at a quarter of the depth.

Weights are random but BatchNorm statistics are set from data first, so activations have the scale of a trained
network (with untouched running stats a 100-layer ResNet's logits reach 1e4 and an absolute bound means nothing).

The bound is max |logit difference| <= 1e-4. Where PyTorch's own float32 result is already further than 5e-5 from
the float64 result of the same model (vgg19-exp8 here: 1.04e-4, its small-variance BatchNorms amplify rounding),
two float32 implementations cannot be held to 1e-4 of each other, and the bound becomes twice that own error.

int8: ncnn for every family (its conversion is seconds), ExecuTorch for one variant (its int8 lowering takes
minutes); each against the model on random inputs, by top-1 agreement of a model whose logits are far apart.
"""

from dataclasses import replace
from functools import cache

import numpy as np
import pytest
import torch

from edgecnn.compress.zoo import get_entry, get_model, list_models, settle_batchnorm
from edgecnn.compress.zoo.builder import build_resnet
from edgecnn.compress.zoo.spec import ResNetSpec
from edgecnn.export import executorch_format
from edgecnn.export import ncnn_format
from edgecnn.export import onnx as onnx_format
from edgecnn.export import tflite as tflite_format
from edgecnn.export.runner import open_model


def settled(name: str, in_chans: int = 1, shallow: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    spec = get_entry(name).spec
    if shallow and isinstance(spec, ResNetSpec):
        spec = replace(spec, stages=tuple(tuple(replace(row, n=min(row.n, 2)) for row in rows) for rows in spec.stages))
        model = build_resnet(spec, 10, in_chans)
    else:
        model = get_model(name, num_classes=10, in_chans=in_chans)
    return settle_batchnorm(model, [torch.randn(16, in_chans, 32, 32) for _ in range(3)])


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
def test_onnx_and_ncnn_fp32_match_pytorch(name, tmp_path):
    model = settled(name)
    x = torch.randn(3, 1, 32, 32)
    expected, bound = reference(model, x)

    info = onnx_format.export_fp32(model, tmp_path / "m.onnx", 1, {"model": name})
    assert info["nodes"] > 0
    onnx_logits = open_model(str(tmp_path / "m.onnx"), threads=1).predict(x.numpy())  # batch 3: dynamic batch works
    assert np.abs(onnx_logits - expected).max() <= bound
    assert onnx_format.read_metadata(tmp_path / "m.onnx")["model"] == name

    ncnn_format.export_fp32(model, tmp_path / "m.ncnn", 1)
    ncnn_model = open_model(str(tmp_path / "m.ncnn"), threads=1)
    assert ncnn_model.input_shape() == [1, 1, 32, 32]
    assert np.abs(ncnn_model.predict(x.numpy()) - expected).max() <= bound


@pytest.mark.parametrize("name", one_per_block_family())
def test_tflite_and_executorch_fp32_match_pytorch(name, tmp_path):
    model = settled(name, shallow=True)
    x = torch.randn(3, 1, 32, 32)
    expected, bound = reference(model, x)
    tflite_format.export_fp32(model, tmp_path / "m.tflite", 1)
    assert np.abs(open_model(str(tmp_path / "m.tflite"), threads=1).predict(x.numpy()) - expected).max() <= bound
    executorch_format.export_fp32(model, tmp_path / "m.pte", 1)
    assert np.abs(open_model(str(tmp_path / "m.pte"), threads=1).predict(x.numpy()) - expected).max() <= bound


def spread(model: torch.nn.Module) -> torch.nn.Module:
    """The model with its classifier's logits pulled apart (x 20), so that top-1 means something on random data."""
    last = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))][-1]
    with torch.no_grad():
        last.weight.mul_(20)
    return model


@pytest.mark.parametrize("name", one_per_block_family())
def test_ncnn_int8_agrees_with_pytorch(name, tmp_path):
    from edgecnn.export.reparam import reparameterize

    model, _ = reparameterize(spread(settled(name, shallow=True)), None, "fold")
    calibration = torch.randn(40, 1, 32, 32).numpy()
    ncnn_format.export_fp32(model, tmp_path / "m.fp32.ncnn", 1)
    details = ncnn_format.export_int8(tmp_path / "m.fp32.ncnn", tmp_path / "m.int8.ncnn", calibration)
    assert details["int8_layers"] > 0
    x = torch.randn(50, 1, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    got = open_model(str(tmp_path / "m.int8.ncnn"), threads=1).predict(x.numpy())
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.85, details


def test_executorch_int8_agrees_with_pytorch(tmp_path):
    model = spread(settled("vgg19-exp8"))
    executorch_format.export_int8(model, tmp_path / "m.pte", 1, torch.randn(40, 1, 32, 32).numpy())
    x = torch.randn(50, 1, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    got = open_model(str(tmp_path / "m.pte"), threads=1).predict(x.numpy())
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.85
