"""Every registered model runs forward for RGB and grey input and passes strict torch.export (the TFLite path
needs it), and the exported program computes what the eager model computes."""

import pytest
import torch

from edgecnn.compress.zoo import get_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_forward_shapes(name):
    torch.manual_seed(0)
    rgb = get_model(name, num_classes=10, in_chans=3).eval()
    grey = get_model(name, num_classes=100, in_chans=1).eval()
    with torch.no_grad():
        assert rgb(torch.randn(1, 3, 32, 32)).shape == (1, 10)
        assert grey(torch.randn(4, 1, 32, 32)).shape == (4, 100)


@pytest.mark.parametrize("name", list_models())
def test_strict_torch_export(name, zoo_model):
    model = zoo_model(name)  # a ResNet at a quarter of its depth: the same blocks (tests/conftest.py)
    x = torch.randn(1, 1, 32, 32)
    program = torch.export.export(model, (x,), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-4, atol=1e-5)
