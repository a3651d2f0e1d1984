"""Export-time re-parameterisation (export/reparam.py): under both ghost rewrites every variant keeps its fp32 logits
within 1e-5, every ghost module is rewritten, the original model is untouched, and the int8 files of the rewritten
graphs are fully integer (op counts of the files themselves)."""

import collections
import copy

import numpy as np
import pytest
import torch
from torch import nn

from edgecnn.compress.layers.ghost import GhostModule
from edgecnn.compress.zoo import get_model, list_models, settle_batchnorm
from edgecnn.compress.layers.ghost import DepthwiseGhost, FoldedGhost
from edgecnn.export.reparam import channel_last, reparameterize


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


def _rewrite_cases():
    """Every rewrite on every variant with ghost modules; one on the others, where every rewrite is the same no-op
    (the test checks that the zoo's "ghost" tag is right)."""
    from edgecnn.compress.zoo.registry import get_entry

    for name in list_models():
        for ghost in (["fold", "fold-dense", "depthwise", "auto"] if "ghost" in get_entry(name).techniques else ["fold"]):
            yield pytest.param(name, ghost, id=f"{name}-{ghost}")


@pytest.mark.parametrize("name, ghost", list(_rewrite_cases()))
def test_rewrite_keeps_the_logits(name, ghost):
    from edgecnn.compress.zoo.registry import get_entry

    model = trained_like(name)
    ghosts = sum(isinstance(m, GhostModule) for m in model.modules())
    assert (ghosts > 0) == ("ghost" in get_entry(name).techniques)
    x = torch.randn(8, 3, 32, 32)
    folded, counts = reparameterize(model, x[:1], ghost)
    shuffled = sum(isinstance(m, GhostModule) and not isinstance(m.primary, nn.Conv2d) for m in model.modules())
    taken = shuffled if ghost == "auto" else ghosts
    assert {k: counts[k] for k in ("ghost", "ghost_rewritten", "ghost_kept")} == {
        "ghost": ghost, "ghost_rewritten": taken, "ghost_kept": ghosts - taken}
    if ghost.startswith("fold") and name.startswith("resnet101") and ghosts:  # ghost bottlenecks on a residual trunk
        from edgecnn.compress.layers import GhostBottleneck

        # every block's project module gave its BatchNorm shift to the trunk (no shift operator left)
        assert counts["shifts_moved"] == sum(isinstance(m, GhostBottleneck) for m in model.modules())
    assert sum(isinstance(m, GhostModule) for m in folded.modules()) == ghosts - taken
    with torch.no_grad():
        reference, rewritten = model(x), folded(x)
        channel_last_rewritten = channel_last(folded)[0](x)  # the same form as the TFLite files convert it
        exact = copy.deepcopy(model).double()(x.double())
    # 1e-5, or three times the model's own float32 error where that is larger: both results carry their own float32
    # rounding (of the same size, the operations differ in order) and the rewritten weights are rounded to float32
    # once more; a random-weight VGG-19 amplifies any rounding ~1000x (its own float32 result is up to 6e-5 from
    # float64, and the two differ by up to 2.3x that). The ResNet-101 variants hold 1e-5.
    own_error = (reference.double() - exact).abs().max().item()
    assert (reference - rewritten).abs().max().item() <= max(1e-5, 3 * own_error)
    assert (reference - channel_last_rewritten).abs().max().item() <= max(1e-5, 3 * own_error)
    assert any(isinstance(m, GhostModule) for m in model.modules()) == (ghosts > 0)  # the original is unchanged


def test_fold_keeps_the_grouped_conv_and_is_exact_on_the_border_and_through_the_shuffle():
    torch.manual_seed(1)
    module = GhostModule(16, 32, act="relu6", primary_groups=4)
    nn.init.uniform_(module.bn.weight, 0.5, 2.0)
    nn.init.normal_(module.bn.bias, 0.0, 1.0)
    module.bn.running_mean.normal_(0.0, 1.0)
    module.bn.running_var.uniform_(0.5, 2.0)
    module.eval()
    x = torch.randn(4, 16, 7, 5)
    folded = module.deploy("fold")
    assert isinstance(folded, FoldedGhost)
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    # every multiply-add of the original and no more: the grouped primary and the half-width depthwise conv
    assert [(c.out_channels, c.groups) for c in convs] == [(16, 4), (16, 16)]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert torch.allclose(module(x), folded(x), atol=1e-5, rtol=0)


def test_channel_last_shuffle_is_the_same_permutation():
    from edgecnn.compress.layers import ChannelShuffle
    from edgecnn.compress.layers.shuffle import ChannelLastShuffle

    model = nn.Sequential(nn.Conv2d(8, 24, 1, groups=4), ChannelShuffle(4), nn.Conv2d(24, 24, 3, groups=24))
    rewritten, count = channel_last(model)
    assert count == 1 and isinstance(rewritten[1], ChannelLastShuffle)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.allclose(model(x), rewritten(x), atol=1e-6, rtol=0)  # the same sums, other memory strides


def test_depthwise_form_is_two_convs_and_exact_on_the_border_and_through_the_shuffle():
    torch.manual_seed(2)
    module = GhostModule(16, 32, act="relu6", primary_groups=4)
    nn.init.uniform_(module.bn.weight, -2.0, 2.0)  # any sign or size: this form never divides by a scale
    nn.init.normal_(module.bn.bias, 0.0, 1.0)
    module.bn.running_mean.normal_(0.0, 1.0)
    module.bn.running_var.uniform_(0.5, 2.0)
    module.eval()
    rewritten = module.deploy("depthwise")
    assert isinstance(rewritten, DepthwiseGhost)
    convs = [m for m in rewritten.modules() if isinstance(m, nn.Conv2d)]
    # the shuffle is absorbed into a dense primary; one depthwise conv does the cheap op and the concat's other half
    assert [c.out_channels for c in convs] == [32, 32] and convs[0].groups == 1 and convs[1].groups == 32
    x = torch.randn(4, 16, 7, 5)
    with torch.no_grad():
        assert torch.allclose(module(x), rewritten(x), atol=1e-5, rtol=0)


def test_a_vanishing_primary_scale_is_never_divided_by():
    torch.manual_seed(3)
    module = GhostModule(8, 16).eval()
    with torch.no_grad():
        module.bn.weight[12] = 0.0  # a primary channel the network switched off
    folded = module.deploy("fold")
    # the primary half keeps its scale in a 1x1 depthwise conv instead of dividing the cheap conv by zero
    assert isinstance(folded.affine, nn.Conv2d) and folded.affine.kernel_size == (1, 1)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.allclose(module(x), folded(x), atol=1e-5, rtol=0)


def small_ghost_net() -> nn.Module:
    """Two of exp13's ghost bottlenecks (grouped + shuffled primaries, one strided with a projection) and its head:
    every op kind the rewrite produces, small enough to convert to TFLite int8 in seconds. (A Linear after the
    average pool, as in the VGG variants with an fc, would leave onnxruntime a float ReduceMean between them.)"""
    from edgecnn.compress.layers.ghost import GhostBottleneck

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        GhostBottleneck(16, 32, 16, primary_groups=4, stride_dw="strided"),
        GhostBottleneck(16, 48, 24, stride=2, ds=True, primary_groups=4, stride_dw="strided"),
        nn.Conv2d(24, 10, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())  # exp13's head: conv, then average

    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.3, 1.5)
            nn.init.normal_(module.bias, 0.0, 0.3)
    return settle_batchnorm(model, [torch.randn(16, 3, 32, 32) for _ in range(3)])


def onnxruntime_ops(path) -> collections.Counter:
    """Op histogram of the graph onnxruntime actually runs (after its QDQ -> QLinear fusions)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(path) + ".optimized.onnx"
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return collections.Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)


@pytest.mark.parametrize("name", ["small-ghost-net", "exp13"])
def test_int8_onnx_of_the_depthwise_form_is_fully_integer(tmp_path, name):
    from edgecnn.export.onnx import export_fp32, quantize_int8

    model = small_ghost_net() if name == "small-ghost-net" else trained_like(name)
    calibration = np.random.default_rng(0).standard_normal((20, 3, 32, 32)).astype(np.float32)
    counts = {}
    for ghost in ("none", "fold", "depthwise"):
        export_fp32(reparameterize(model, torch.zeros(1, 3, 32, 32), ghost)[0], tmp_path / f"{ghost}.onnx", 3, {})
        quantize_int8(tmp_path / f"{ghost}.onnx", tmp_path / f"{ghost}.int8.onnx", calibration)
        counts[ghost] = onnxruntime_ops(tmp_path / f"{ghost}.int8.onnx")
    ghosts = sum(isinstance(m, GhostModule) for m in model.modules())
    assert counts["none"]["BatchNormalization"] == ghosts  # the paper's graph: one float island per ghost module
    assert counts["fold"]["BatchNormalization"] == 0 and counts["fold"]["QLinearConcat"] == ghosts
    integer = counts["depthwise"]
    # float only at the ends: one QuantizeLinear on the input, one DequantizeLinear on the logits
    assert integer["QuantizeLinear"] == 1 and integer["DequantizeLinear"] == 1
    float_ops = {"BatchNormalization", "Conv", "Add", "Mul", "Sub", "Concat", "QLinearConcat", "Clip", "Relu"}
    assert not float_ops & set(integer)
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert integer["QLinearConv"] == convs  # the same number of convs as the model as trained, all integer
    # shuffles absorbed: no gather, and only the layout pair at the graph's ends (the paper's graph has dozens)
    assert integer["Gather"] == 0 and integer["Transpose"] <= 2 < counts["none"]["Transpose"]


def test_int8_tflite_of_the_depthwise_form_has_no_quantize_inside(tmp_path):
    from edgecnn.export.tflite import count_ops, export_int8

    model = small_ghost_net()
    calibration = np.random.default_rng(0).standard_normal((20, 3, 32, 32)).astype(np.float32)
    counts = {}
    for ghost in ("none", "depthwise"):
        export_int8(reparameterize(model, torch.zeros(1, 3, 32, 32), ghost)[0], tmp_path / f"{ghost}.tflite", 3,
                    calibration)
        counts[ghost] = count_ops(tmp_path / f"{ghost}.tflite")
    assert counts["none"].get("DEQUANTIZE", 0) == 4  # one float BatchNorm island per ghost module
    integer = counts["depthwise"]
    # the file's input and output are int8 themselves (the runner quantizes): no (DE)QUANTIZE anywhere
    assert integer.get("QUANTIZE", 0) == 0 and integer.get("DEQUANTIZE", 0) == 0
    assert not {"CONCATENATION", "SUB", "MUL"} & set(integer)
    # the channel shuffles leave no layout ops either (the paper's graph: transposes around every shuffle), and
    # the channel-last input (export/tflite.py's default) leaves none at the input
    assert not {"GATHER", "GATHER_ND"} & set(integer) and integer.get("TRANSPOSE", 0) == 0
    assert counts["none"].get("TRANSPOSE", 0) > 4
