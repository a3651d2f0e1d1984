"""The device runner: plain numpy preprocessing identical to training's, and no torch or edgecnn import."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgecnn.data import normalize
from edgecnn.export import runner

RUNNER = Path(runner.__file__)


def test_preprocess_matches_training_normalization():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    np.testing.assert_allclose(runner.preprocess(images.numpy(), mean, std), normalize(images, mean, std).numpy(),
                               rtol=0, atol=1e-6)


def test_unknown_suffix_is_refused():
    with pytest.raises(runner.RunnerError, match="no runtime for .pt"):
        runner.open_model("model.pt")


def test_tflite_layouts_compute_the_same_and_the_file_says_which(tmp_path):
    from edgecnn.export.tflite import count_ops, export_fp32

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU6(),
                                torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten()).eval()
    assert export_fp32(model, tmp_path / "nchw.tflite", 3, layout="NCHW")["layout"] == "NCHW"
    assert export_fp32(model, tmp_path / "nhwc.tflite", 3)["layout"] == "NHWC"  # the default
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    for name, layout in (("nchw", "NCHW"), ("nhwc", "NHWC")):
        loaded = runner.open_model(str(tmp_path / f"{name}.tflite"), threads=1)  # the layout read off the file
        assert loaded.layout == layout
        np.testing.assert_allclose(loaded.predict(x.numpy()), expected, rtol=0, atol=1e-5)  # callers feed NCHW
    assert count_ops(tmp_path / "nchw.tflite").get("TRANSPOSE", 0) == 1  # the converter's NCHW -> NHWC
    assert count_ops(tmp_path / "nhwc.tflite").get("TRANSPOSE", 0) == 0
    with pytest.raises(runner.RunnerError, match=r"takes NHWC input \[1, 32, 32, 3\], not NCHW"):
        runner.open_model(str(tmp_path / "nhwc.tflite"), layout="NCHW")
    with pytest.raises(runner.RunnerError, match="layout must be NCHW or NHWC"):
        runner.open_model(str(tmp_path / "nhwc.tflite"), layout="CHW")


@pytest.mark.parametrize("channels", [1, 3, 40])
def test_an_onnx_file_is_read_as_nchw_whatever_its_width(channels, tmp_path):
    # [N, 40, 32, 32] once read as channel-last (40 > 32); the rule is the square image dims, not the channel count
    conv = torch.nn.Conv2d(channels, 4, 3).eval()
    torch.onnx.export(conv, (torch.zeros(1, channels, 32, 32),), str(tmp_path / "m.onnx"), dynamo=False,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "n"}})
    model = runner.open_model(str(tmp_path / "m.onnx"), threads=1)
    assert model.layout == "NCHW"
    x = torch.randn(2, channels, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(model.predict(x.numpy()), conv(x).numpy(), rtol=0, atol=1e-5)


def test_runner_needs_neither_torch_nor_edgecnn(tmp_path):
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    torch.onnx.export(Tiny().eval(), (torch.zeros(2, 1, 32, 32),), str(tmp_path / "m.onnx"), dynamo=False,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "n"}})
    script = f"""
import sys, importlib.util
sys.modules['torch'] = None; sys.modules['edgecnn'] = None  # any import of them now fails
spec = importlib.util.spec_from_file_location('runner', {str(RUNNER)!r})
runner = importlib.util.module_from_spec(spec); spec.loader.exec_module(runner)
import numpy as np
model = runner.open_model({str(tmp_path / 'm.onnx')!r}, threads=1)
x = runner.preprocess(np.zeros((3, 1, 32, 32), np.uint8), [0.5], [0.5])
print(model.predict(x).shape)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(3, 4)"


def test_a_native_28x28_image_is_padded_as_in_training(tmp_path):
    """Fashion-MNIST images are 28x28; training pads them with black to 32x32 (edgecnn/data.py: rows and columns
    2..29), and so does `predict` for a bundle whose manifest says pad_from 28x28."""
    image = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    np.save(tmp_path / "shirt.npy", image)
    loaded = runner.load_image(str(tmp_path / "shirt.npy"), channels=1, pad_from=(28, 28))
    expected = np.zeros((1, 32, 32), np.uint8)
    expected[0, 2:30, 2:30] = image
    np.testing.assert_array_equal(loaded, expected)
    # a bundle of a dataset that was never padded (CIFAR) fits the same image instead: no black frame
    fitted = runner.load_image(str(tmp_path / "shirt.npy"), channels=1)
    assert fitted.shape == (1, 32, 32) and fitted[0, 0].mean() > 0


def test_other_sizes_are_centre_cropped_and_resized_without_aliasing(tmp_path):
    # a 96x64 (HxW) photo: the centred 64x64 crop (rows 16..79) is what is kept, a one-pixel checkerboard of 0 and 255 (black outside it)
    checks = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    photo = np.zeros((96, 64, 3), np.uint8)
    photo[16:80] = checks[..., None]
    np.save(tmp_path / "photo.npy", photo)
    loaded = runner.load_image(str(tmp_path / "photo.npy"), channels=3)
    assert loaded.shape == (3, 32, 32)
    # halving it averages neighbours: grey everywhere (the edges' truncated filter within a few levels), where
    # dropping pixels would give pure black or white, and a wrong crop black rows
    assert np.abs(loaded.astype(int) - 128).max() <= 4
    smooth = np.linspace(0, 255, 20 * 20).reshape(20, 20).astype(np.uint8)  # enlarging keeps order and range
    np.save(tmp_path / "small.npy", smooth)
    grown = runner.load_image(str(tmp_path / "small.npy"), channels=1)[0]
    assert grown.shape == (32, 32) and grown[0, 0] <= 10 and grown[-1, -1] >= 245
    assert (np.diff(grown.astype(int), axis=1) >= -1).all()
    np.save(tmp_path / "float.npy", np.zeros((32, 32), np.float32))
    with pytest.raises(runner.RunnerError, match="expected a uint8 image"):
        runner.load_image(str(tmp_path / "float.npy"), channels=1)


def test_text_table_aligns_numbers_right():
    table = runner.text_table(["file", "top-1"], [["a.onnx", "91.20%"], ["model.int8.tflite", "9.00%"]])
    lines = table.splitlines()
    assert lines[0].startswith("file ") and set(lines[1]) == {"-", " "}
    assert lines[2].endswith("91.20%") and lines[3].endswith(" 9.00%") and len(lines[2]) == len(lines[3])
