"""Every zoo variant exports to ONNX (checked, simplified) and to TFLite fp32, and each file, run by its own runtime,
computes what the PyTorch model computes.

Weights are random but BatchNorm statistics are set from data first, so activations have the scale of a trained
network (with untouched running stats a 100-layer ResNet's logits reach 1e4 and an absolute bound means nothing).

The bound is max |logit difference| <= 1e-4. Where PyTorch's own float32 result is already further than 5e-5 from
the float64 result of the same model (vgg19-exp8 here: 1.04e-4, its small-variance BatchNorms amplify rounding),
two float32 implementations cannot be held to 1e-4 of each other, and the bound becomes twice that own error.
TFLITE_FAILS lists the variants litert-torch cannot convert, with the reason; the test fails if one of them starts
converting (so the list stays true) or if any other variant stops.
"""

import numpy as np
import pytest
import torch

from edgecnn.compress.zoo import get_model, list_models, settle_batchnorm
from edgecnn.export import onnx as onnx_format
from edgecnn.export import tflite as tflite_format
from edgecnn.export.runner import open_model

TFLITE_FAILS: dict[str, str] = {}


def settled(name: str, in_chans: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    model = get_model(name, num_classes=10, in_chans=in_chans)
    return settle_batchnorm(model, [torch.randn(16, in_chans, 32, 32) for _ in range(3)])


@pytest.mark.parametrize("name", list_models())
def test_onnx_and_tflite_fp32_match_pytorch(name, tmp_path):
    model = settled(name)
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
        own_error = np.abs(expected - model.double()(x.double()).numpy()).max()
        model.float()
    bound = 1e-4 if own_error <= 5e-5 else 2 * own_error

    info = onnx_format.export_fp32(model, tmp_path / "m.onnx", 1, {"model": name})
    assert info["nodes"] > 0
    onnx_logits = open_model(str(tmp_path / "m.onnx"), threads=1).predict(x.numpy())  # batch 3: dynamic batch works
    assert np.abs(onnx_logits - expected).max() <= bound
    assert onnx_format.read_metadata(tmp_path / "m.onnx")["model"] == name

    if name in TFLITE_FAILS:
        with pytest.raises(Exception, match=TFLITE_FAILS[name]):
            tflite_format.export_fp32(model, tmp_path / "m.tflite", 1)
        return
    tflite_format.export_fp32(model, tmp_path / "m.tflite", 1)
    tflite_logits = open_model(str(tmp_path / "m.tflite"), threads=1).predict(x.numpy())
    assert np.abs(tflite_logits - expected).max() <= bound
