"""Depth pruning (compress/methods/depth.py): a removed block computes exactly what the block computed with its
residual branch silenced, the model rebuilds from its checkpoint (also after structured pruning), and the exported
graph loses the block's operators."""

import copy

import onnx
import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from edgecnn.compress.layers import RemovedBlock, Residual
from edgecnn.compress.methods.depth import block_sensitivity
from edgecnn.compress.rebuild import remove_blocks, removable_blocks, removed_blocks
from edgecnn.compress.methods.structured import make_pruner
from edgecnn.compress.zoo import count_params, get_model
from edgecnn.compress.zoo.measure import settle_batchnorm
from edgecnn.errors import EdgecnnError
from edgecnn.export import onnx as onnx_format
from edgecnn.compress.rebuild import build_from_checkpoint, structure_of

# ghost bottlenecks (+ grouped pointwise and shuffle), torchvision Bottleneck and BasicBlock, inverted residuals,
# residual Fire modules
FAMILIES = ["resnet101-exp13", "resnet101-exp1", "resnet18", "resnet101-exp8", "resnet101-exp5"]


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return settle_batchnorm(get_model(name, 10, 1), [torch.randn(8, 1, 32, 32)]).eval()


def _silenced(model: nn.Module, names: list[str]) -> nn.Module:
    """A copy in which the named blocks' residual branches output zeros: what removing them must compute."""
    twin = copy.deepcopy(model)
    for name in names:
        block = twin.get_submodule(name)
        branch = block.body if isinstance(block, Residual) else block.bn3 if isinstance(block, Bottleneck) else block.bn2
        branch.register_forward_hook(lambda module, args, out: torch.zeros_like(out))
    return twin


@pytest.mark.parametrize("name", FAMILIES)
def test_removing_blocks_equals_silencing_their_residual_branch(name):
    model = _model(name)
    candidates = removable_blocks(model)
    assert candidates, f"{name} has no removable block"
    chosen = candidates[::2]
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = _silenced(model, chosen)(x)
        remove_blocks(model, chosen)
        assert removed_blocks(model) == chosen
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_a_model_with_blocks_removed_still_trains():
    """torchvision's blocks end in an in-place ReLU: left in place where the block was, it would overwrite the
    previous block's output, which the backward pass still needs."""
    model = _model("resnet18").train()
    remove_blocks(model, removable_blocks(model))
    model(torch.randn(2, 1, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_only_identity_shortcut_blocks_are_removable():
    model = _model("resnet101-exp1")
    for name in removable_blocks(model):
        block = model.get_submodule(name)
        assert isinstance(block, (Bottleneck, BasicBlock)) and block.downsample is None
    projected = next(n for n, m in model.named_modules() if isinstance(m, Bottleneck) and m.downsample is not None)
    with pytest.raises(EdgecnnError, match="cannot be removed"):
        remove_blocks(model, [projected])
    vgg = _model("vgg19-exp1")
    assert removable_blocks(vgg) == []


def test_a_depth_and_structurally_pruned_model_rebuilds_from_its_checkpoint():
    model = _model("resnet101-exp13")
    remove_blocks(model, removable_blocks(model)[1::3])
    example = torch.randn(2, 1, 32, 32)
    make_pruner(model, example, 0.3).step()  # width as well: both records must work together
    payload = {"model": "resnet101-exp13", "num_classes": 10, "in_chans": 1, "state_dict": model.state_dict(),
               "structure": structure_of(model), "removed_blocks": removed_blocks(model)}
    rebuilt = build_from_checkpoint(payload).eval()
    assert count_params(rebuilt) == count_params(model)
    assert sum(isinstance(m, RemovedBlock) for m in rebuilt.modules()) == len(payload["removed_blocks"])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(example), model(example), rtol=0, atol=0)
    with pytest.raises(EdgecnnError, match="does not fit"):
        build_from_checkpoint({**payload, "removed_blocks": ["layer9.1"]})


def test_sensitivity_scan_scores_every_block_and_leaves_the_model_whole():
    model = _model("resnet101-exp13")
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        before = model(x)
        reference = before.argmax(1)
        rows = block_sensitivity(model, lambda net: float((net(x).argmax(1) == reference).float().mean()))
        assert sorted(r["block"] for r in rows) == sorted(removable_blocks(model))
        assert [r["drop"] for r in rows] == sorted(r["drop"] for r in rows)
        assert not removed_blocks(model)
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_removed_blocks_vanish_from_the_onnx_graph(tmp_path):
    model = _model("resnet101-exp13")
    onnx_format.export_fp32(model, tmp_path / "full.onnx", 1, {"model": "full"})
    chosen = removable_blocks(model)[::2]
    remove_blocks(model, chosen)
    onnx_format.export_fp32(model, tmp_path / "depth.onnx", 1, {"model": "depth"})
    nodes = [len(onnx.load(tmp_path / f"{n}.onnx").graph.node) for n in ("full", "depth")]
    # a ghost bottleneck of exp13 is at least its two ghost modules (1x1, depthwise 3x3, concat) and the add
    assert nodes[0] - nodes[1] >= 7 * len(chosen), nodes
