"""Models from outside the zoo through export: the generic rewrites are exact (logits within 1e-5), and trained timm runs of several
families export to ONNX and TFLite, fp32 and int8, each file checked through its own runtime.

int8 is held to the logits of the model (centered relative error, as tests/export/test_zoo_formats.py does on
random nets), not to top-1 agreement: a one-epoch run on generated data has margins too thin for agreement to
mean anything.
"""

import numpy as np
import pytest
import torch
from torch import nn

from edgecnn.compress.train import TrainConfig, train
from edgecnn.compress.zoo import get_model, settle_batchnorm
from edgecnn.data import write_synthetic_cifar
from edgecnn.export.pipeline import ExportOptions, export_checkpoint, torch_logits
from edgecnn.export.reparam import generic_rewrite
from edgecnn.export.runner import open_model
from edgecnn.data import load_dataset

#: one architecture per timm family the rewrite is checked on (RepVGG: timm's own deploy hooks)
FAMILIES = ("mobilenetv3_small_050", "test_resnet", "efficientnet_lite0", "ghostnet_050", "regnetx_002", "repvgg_a0")
#: the families exported end to end (the cheapest three that differ most: inverted residual + SE + hard-swish,
#: basic/bottleneck ResNet, ghost modules)
EXPORTED = ("mobilenetv3_small_050", "test_resnet", "ghostnet_050")


@pytest.mark.parametrize("arch", FAMILIES)
def test_the_generic_rewrite_is_exact_on_timm_families(arch):
    torch.manual_seed(0)
    model = settle_batchnorm(get_model(f"timm:{arch}", 10, 1), [torch.randn(16, 1, 32, 32) for _ in range(3)]).eval()
    rewritten, counts = generic_rewrite(model, timm_hooks=True)
    x = torch.randn(8, 1, 32, 32)
    with torch.no_grad():
        expected, got = model(x), rewritten(x)
        own_error = float((expected.double() - model.double()(x.double())).abs().max())  # float32's own rounding
    # 1e-5, unless float32 itself is further than half that from the float64 result (efficientnet_lite0's random
    # logits reach 12, and float32 alone is 4e-5 off): no float32 rewrite can be held closer than its own rounding
    assert (got - expected).abs().max() <= max(1e-5, 2 * own_error)
    if arch == "repvgg_a0":  # its branches become one conv each (timm's hook), which leaves no BatchNorm to fold
        assert counts["timm_reparameterized"] and not any(isinstance(m, nn.BatchNorm2d) for m in rewritten.modules())
    else:
        assert counts["batchnorm_folded"] > 0 and "batchnorm_kept" not in counts
        assert not any(isinstance(m, nn.BatchNorm2d) for m in rewritten.modules())


def test_a_network_fx_cannot_trace_keeps_its_batchnorms_and_says_why():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.fc = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 10)

        def forward(self, x):
            y = self.bn(self.conv(x))
            if y.sum() > 0:  # data-dependent control flow
                y = y * 2
            return self.fc(y.mean((2, 3)))

    model = Branchy().eval()
    rewritten, counts = generic_rewrite(model)
    assert "not traceable by torch.fx" in counts["batchnorm_kept"] and counts["batchnorm_folded"] == 0
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(rewritten(x), model(x))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_cifar(root, 10, train_size=300, test_size=100, seed=4)
    return str(root)


def centered_relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    got, expected = got - got.mean(1, keepdims=True), expected - expected.mean(1, keepdims=True)
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


@pytest.mark.parametrize("arch", EXPORTED)
def test_a_trained_timm_run_exports_fp32_and_int8_through_each_runtime(arch, data_dir, tmp_path):
    run = train(TrainConfig(model=f"timm:{arch}", dataset="cifar10", data_dir=data_dir, runs_dir=str(tmp_path / "runs"),
                            name="r", epochs=2, batch_size=50, lr=0.05))
    report = export_checkpoint(run.checkpoint(), tmp_path / "out", ExportOptions(int8=True, calib_samples=100),
                               data_dir=data_dir)
    rows = {row["name"]: row for row in report["artifacts"]}
    # no zoo blocks: every graph form is the same graph, so each format and precision is one file
    assert set(rows) == {"pytorch-fp32", "onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"}, rows.keys()
    assert all(row["status"] == "ok" for row in rows.values()), [(r["name"], r["error"]) for r in rows.values()]
    assert report["rewrites"]["op-minimal/fp32"]["batchnorm_folded"] > 0
    for name in ("onnx-fp32", "tflite-fp32"):
        assert rows[name]["logit_max_err"] <= 1e-4, (name, rows[name]["logit_max_err"])
        assert rows[name]["agreement"] == 1.0
    test = load_dataset("cifar10", data_dir).split("test")
    mean, std = report["data"]["mean"], report["data"]["std"]
    from edgecnn.compress.rebuild import build_from_checkpoint
    from edgecnn.runs import load_checkpoint

    expected = torch_logits(build_from_checkpoint(load_checkpoint(run.checkpoint())), test.images, mean, std)
    from edgecnn.export.runner import predict_batches

    for name in ("onnx-int8", "tflite-int8"):
        model = open_model(str(tmp_path / "out" / rows[name]["file"]), threads=1)
        got = np.concatenate([b for _, b in predict_batches(model, test.images.numpy(), mean, std)])
        assert centered_relative_error(got, expected) <= 0.6, name
