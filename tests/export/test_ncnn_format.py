"""ncnn files: the container, the .param/.bin reading and writing the int8 rewrite stands on, and the per-layer
check that keeps a wrongly quantized layer in fp32."""

import numpy as np
import pytest
import torch

from edgecnn.errors import EdgecnnError
from edgecnn.export import ncnn_format as ncnn
from edgecnn.export.runner import open_model


def small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
        torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()


@pytest.fixture(scope="module")
def fp32_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ncnn") / "m.fp32.ncnn"
    ncnn.export_fp32(small_net(), path, 1)
    return path


def test_the_file_is_ncnns_own_pair_in_one_zip(fp32_file):
    param, weights = ncnn.read_container(fp32_file)
    layers = ncnn.parse_param(param)
    assert ncnn.render_param(layers) == param  # written back exactly as read
    ncnn.split_weights(layers, weights)
    assert b"".join(block for layer in layers for block in layer.weights) == weights
    assert [layer.type for layer in layers if layer.type in ncnn.QUANTIZABLE] == [
        "Convolution", "ConvolutionDepthWise", "Convolution", "InnerProduct"]
    assert next(layer for layer in layers if layer.type == "Input").params == {"0": "32", "1": "32", "2": "1"}
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        expected = small_net()(x).numpy()
    assert np.abs(open_model(str(fp32_file), threads=1).predict(x.numpy()) - expected).max() < 1e-4


def test_weights_that_do_not_add_up_are_refused(fp32_file):
    param, weights = ncnn.read_container(fp32_file)
    with pytest.raises(EdgecnnError, match="ends inside layer"):
        ncnn.split_weights(ncnn.parse_param(param), weights[:-100])
    with pytest.raises(EdgecnnError, match="bytes no layer reads"):
        ncnn.split_weights(ncnn.parse_param(param), weights + b"\0" * 8)
    unknown = param.replace("Pooling ", "Mystery ", 1)
    with pytest.raises(EdgecnnError, match="type Mystery"):
        ncnn.split_weights(ncnn.parse_param(unknown), weights)


def test_int8_file_stores_int8_weights_and_agrees(fp32_file, tmp_path):
    calibration = np.random.default_rng(0).standard_normal((60, 1, 32, 32)).astype(np.float32)
    details = ncnn.export_int8(fp32_file, tmp_path / "m.int8.ncnn", calibration)
    param, weights = ncnn.read_container(tmp_path / "m.int8.ncnn")
    layers = ncnn.parse_param(param)
    ncnn.split_weights(layers, weights)  # the int8 file reads back: scales where ncnn's load_model expects them
    quantized = [layer for layer in layers if layer.param(8)]
    assert len(quantized) == details["int8_layers"] >= 3
    assert all(layer.weights[0][:4] == (ncnn.INT8_TAG).to_bytes(4, "little") for layer in quantized)
    assert len(weights) < len(ncnn.read_container(fp32_file)[1])
    x = np.random.default_rng(1).standard_normal((40, 1, 32, 32)).astype(np.float32)
    reference = open_model(str(fp32_file), threads=1).predict(x)
    got = open_model(str(tmp_path / "m.int8.ncnn"), threads=1).predict(x)
    assert np.abs(got - reference).max() < 0.1 * np.abs(reference).max()


def test_a_layer_whose_int8_output_is_wrong_is_found_and_kept_fp32(fp32_file):
    """A scale 1000x too large saturates one layer's int8 input: the check, which runs each layer alone from exact
    fp32 input, must name that layer and no other (the wrong layers are not assumed: they are measured)."""
    param, weights = ncnn.read_container(fp32_file)
    layers = ncnn.parse_param(param)
    ncnn.split_weights(layers, weights)
    net = ncnn._net(param, weights)
    images = np.random.default_rng(0).standard_normal((8, 1, 32, 32)).astype(np.float32)
    targets = [layer for layer in layers if layer.type in ncnn.QUANTIZABLE]
    values = ncnn._extract(net, {"in0": images[0]}, [layer.bottoms[0] for layer in targets])
    scales = {layer.name: 127 / float(np.abs(v).max()) for layer, v in zip(targets, values, strict=True)}
    broken = targets[2].name
    scales[broken] *= 1000
    errors = ncnn.layer_errors(layers, net, scales, images, "in0")
    assert {name for name, error in errors.items() if error > ncnn.FALLBACK_ERROR} == {broken}, errors


def test_a_grouped_convolution_stays_fp32_and_the_file_answers_one_way(tmp_path):
    """ncnn's int8 grouped convolution (8 outputs per group here) computes garbage, on some shapes differently on
    each run (benchmarks/ncnn_grouped_int8.py); it is kept fp32 by rule, whatever one calibration pass measures,
    while the depthwise conv beside it (one channel per group) is quantized."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1, groups=16),
        torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 1, groups=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(32, 10)).eval()
    ncnn.export_fp32(model, tmp_path / "g.fp32.ncnn", 1)
    layers = ncnn.parse_param(ncnn.read_container(tmp_path / "g.fp32.ncnn")[0])
    grouped = [layer.name for layer in layers if layer.is_grouped_convolution()]
    depthwise = [layer.name for layer in layers if layer.type == "ConvolutionDepthWise" and layer.name not in grouped]
    assert len(grouped) == 1 and len(depthwise) == 1

    calibration = np.random.default_rng(0).standard_normal((40, 1, 32, 32)).astype(np.float32)
    details = ncnn.export_int8(tmp_path / "g.fp32.ncnn", tmp_path / "g.int8.ncnn", calibration, fallback=False)
    assert details["fp32_unsafe_layers"] == grouped == details["fp32_fallback_layers"]
    assert details["unsafe_reason"] == ncnn.UNSAFE_INT8
    int8_layers = ncnn.parse_param(ncnn.read_container(tmp_path / "g.int8.ncnn")[0])
    assert {layer.name for layer in int8_layers if layer.param(8)} >= set(depthwise)
    x = np.random.default_rng(1).standard_normal((20, 1, 32, 32)).astype(np.float32)
    runtime = open_model(str(tmp_path / "g.int8.ncnn"), threads=1)
    first = runtime.predict(x)
    assert np.isfinite(first).all() and np.array_equal(first, runtime.predict(x))
    reference = open_model(str(tmp_path / "g.fp32.ncnn"), threads=1).predict(x)
    assert np.abs(first - reference).max() < 0.1 * np.abs(reference).max()
