"""Model files made outside edgecnn: plain `torch.onnx.export`, litert-torch and ExecuTorch files of a small CNN trained
here on Fashion-MNIST go through `edgecnn bench` (accuracy on the whole test split through each file's runtime, latency and
memory in the same row) and `edgecnn bundle --file`, whose bundle then runs with only numpy and one runtime."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgecnn.bench.store import ResultStore
from edgecnn.data import load_dataset, normalize
from edgecnn.errors import EdgecnnError
from edgecnn.export.foreign import describe_file, import_files
from edgecnn.export.record import ExportRecord


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def made_elsewhere(tmp_path_factory):
    """(folder, PyTorch test accuracy): plain.onnx and plain.tflite of a CNN trained for a few seconds, written
    with each tool's plain call, as a user of another toolchain would."""
    import litert_torch

    torch.manual_seed(0)
    data = load_dataset("fashion-mnist")
    net = small_cnn()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    images, labels = data.train.images[:4000], data.train.labels[:4000]
    for _ in range(2):
        for start in range(0, len(images), 100):
            loss = nn.functional.cross_entropy(net(normalize(images[start:start + 100], data.mean, data.std)),
                                               labels[start:start + 100])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    test = data.split("test")
    with torch.no_grad():
        accuracy = float((net(normalize(test.images, data.mean, data.std)).argmax(1) == test.labels).float().mean())
    folder = tmp_path_factory.mktemp("elsewhere")
    example = torch.zeros(1, 1, 32, 32)
    torch.onnx.export(net, (example,), str(folder / "plain.onnx"), dynamo=False, input_names=["x"],
                      output_names=["y"])
    litert_torch.convert(net, (example,)).export(str(folder / "plain.tflite"))
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = to_edge_transform_and_lower(torch.export.export(net, (example,)), partitioner=[XnnpackPartitioner()])
    (folder / "plain.pte").write_bytes(program.to_executorch().buffer)
    torch.save(net.state_dict(), folder / "net.pt")
    return folder, accuracy


def edgecnn(*args, cwd):
    return subprocess.run([sys.executable, "-m", "edgecnn", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_bench_takes_files_made_elsewhere_with_accuracy_on_fashion_mnist(made_elsewhere, tmp_path):
    folder, torch_accuracy = made_elsewhere
    assert torch_accuracy > 0.5  # it learned something: accuracy is a measurement here, not noise
    result = edgecnn("bench", folder / "plain.onnx", folder / "plain.tflite", "--dataset", "fashion-mnist",
                     "--runs", 20, "--warmup", 2, "--threads", 1, "--store", tmp_path / "bench.sqlite",
                     "--exports-root", tmp_path / "artifacts", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy" in result.stderr and "Traceback" not in result.stderr
    (export_dir,) = (tmp_path / "artifacts").glob("file-plain-*")
    record = ExportRecord.read(export_dir)
    rows = {row.file: row for row in record.files()}
    assert set(rows) == {"plain.onnx", "plain.tflite"} and record.images == 10_000
    for row in rows.values():  # the whole test split through each file's own runtime: what PyTorch scored
        assert abs(row.accuracy - torch_accuracy) <= 0.002, (row.file, row.accuracy, torch_accuracy)
        assert row.precision == "fp32" and row.details["layout"] == "NCHW" and row.details["input"] == [1, 32, 32]
    assert rows["plain.onnx"].details["io"]["input"]["name"] == "x"
    bench = json.loads(result.stdout)
    measured = {row["file"]: row for row in bench["rows"]}
    assert set(measured) == {"plain.onnx", "plain.tflite"}
    for row in measured.values():  # the same row as for edgecnn's own files: latency, memory, sample accuracy
        assert row["p50_ms"] > 0 and row["peak_rss_mib"] > 0 and 0.4 < row["accuracy"] <= 1
    assert len(ResultStore(tmp_path / "bench.sqlite").rows()) == 2
    manifest = json.loads((export_dir / "bundle" / "manifest.json").read_text())
    assert manifest["input"]["mean"] == [0.219] and manifest["sample"]["labelled"]

    again = edgecnn("bench", folder / "plain.onnx", folder / "plain.tflite", "--dataset", "fashion-mnist", "--runs", 5,
                    "--warmup", 1, "--threads", 1, "--store", tmp_path / "bench.sqlite", "--exports-root",
                    tmp_path / "artifacts", cwd=tmp_path)
    assert again.returncode == 0 and " on test " not in again.stderr  # the import is reused, not measured again


@pytest.mark.parametrize("runtime,file", [("onnxruntime", "plain.onnx"), ("litert", "plain.tflite")])
def test_a_bundle_of_files_made_elsewhere_runs_with_numpy_and_one_runtime(made_elsewhere, tmp_path, device_python,
                                                                          runtime, file):
    folder, torch_accuracy = made_elsewhere
    result = edgecnn("bundle", "--file", folder / file, "--dataset", "fashion-mnist", "--exports-root",
                     tmp_path / "artifacts", "--sample", 500, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (bundle,) = (tmp_path / "artifacts").glob("file-plain-*/bundle")
    python = device_python(runtime)
    evaluated = subprocess.run([python, str(bundle / "runner.py"), "eval", "--json"], capture_output=True, text=True,
                               cwd=tmp_path, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    (scored,) = json.loads(evaluated.stdout)["results"]
    assert scored["file"] == file and scored["images"] == 500 and abs(scored["accuracy"] - torch_accuracy) < 0.06
    image = np.load(bundle / "sample_images.npy")[0, 0]  # a native 28x28 Fashion-MNIST image is padded, as trained
    np.save(tmp_path / "image.npy", image[2:30, 2:30])
    predicted = subprocess.run([python, str(bundle / "runner.py"), "predict", str(tmp_path / "image.npy"), "--json"],
                               capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0 and len(json.loads(predicted.stdout)["top"]) == 3, predicted.stderr


def test_without_a_dataset_the_row_has_latency_and_no_accuracy(made_elsewhere, tmp_path):
    folder, _ = made_elsewhere
    result = edgecnn("bench", folder / "plain.onnx", "--runs", 5, "--warmup", 1, "--threads", 1, "--store",
                     tmp_path / "bench.sqlite", "--exports-root", tmp_path / "artifacts", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(result.stdout)["rows"]
    assert row["accuracy"] is None and row["p50_ms"] > 0
    assert "no accuracy (no --dataset)" in result.stderr
    (manifest,) = (tmp_path / "artifacts").glob("file-plain-*/bundle/manifest.json")
    manifest = json.loads(manifest.read_text())
    assert not manifest["sample"]["labelled"] and manifest["input"]["mean"] == [0.0]


def test_an_int8_file_made_elsewhere_is_read_as_int8(made_elsewhere, tmp_path):
    """onnxruntime's own static quantization (QDQ), as a user would run it: the quantize operators tell."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    folder, torch_accuracy = made_elsewhere
    data = load_dataset("fashion-mnist")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": normalize(data.train.images[i:i + 1], data.mean, data.std).numpy()}
                                 for i in range(50)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(folder / "plain.onnx"), str(tmp_path / "plain.int8.onnx"), Reader())
    assert describe_file(tmp_path / "plain.int8.onnx")["precision"] == "int8"
    record = import_files([tmp_path / "plain.int8.onnx"], tmp_path / "out", dataset="fashion-mnist")
    (row,) = record.files()
    assert row.precision == "int8" and abs(row.accuracy - torch_accuracy) < 0.03


def test_executorch_files_made_elsewhere_are_scored_with_their_precision(made_elsewhere, tmp_path):
    """A .pte from ExecuTorch's plain calls, fp32 and PT2E int8 (XNNPACKQuantizer): shape from the program, precision
    from the XNNPACK graph inside, accuracy through ExecuTorch's runtime."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    folder, torch_accuracy = made_elsewhere
    data = load_dataset("fashion-mnist")
    assert describe_file(folder / "plain.pte")["precision"] == "fp32"
    assert describe_file(folder / "plain.pte")["input"] == [1, 32, 32]

    trained = small_cnn()
    trained.load_state_dict(torch.load(folder / "net.pt", weights_only=True))
    net = torch.export.export(trained.eval(), (torch.zeros(1, 1, 32, 32),)).module()
    prepared = prepare_pt2e(net, XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True)))
    for i in range(32):
        prepared(normalize(data.train.images[i:i + 1], data.mean, data.std))
    quantized = torch.export.export(convert_pt2e(prepared), (torch.zeros(1, 1, 32, 32),))
    lowered = to_edge_transform_and_lower(quantized, partitioner=[XnnpackPartitioner()]).to_executorch()
    (tmp_path / "plain.int8.pte").write_bytes(lowered.buffer)

    record = import_files([folder / "plain.pte", tmp_path / "plain.int8.pte"], tmp_path / "out",
                          dataset="fashion-mnist")
    fp32, int8 = record.files()
    assert (fp32.format, fp32.precision, int8.precision) == ("executorch", "fp32", "int8")
    assert abs(fp32.accuracy - torch_accuracy) <= 0.002 and abs(int8.accuracy - torch_accuracy) < 0.03


class TwoInputs(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10].unsqueeze(1)  # (N, 1, 10): not one row of logits per image


@pytest.mark.parametrize("model,shape,message", [
    (nn.Linear(10, 3), (1, 10), r"takes a 2-D input \[1, 10\], not an image batch"),
    (nn.Conv2d(4, 4, 1), (1, 4, 8, 8), r"not an image batch of 1 or 3 channels"),
    (TwoInputs(), (1, 1, 32, 32), r"gives \[1, 1, 10\] for one image; a classifier gives one row of logits"),
])
def test_a_file_that_is_not_an_image_classifier_is_one_line(tmp_path, model, shape, message):
    torch.onnx.export(model.eval(), (torch.zeros(shape),), str(tmp_path / "m.onnx"), dynamo=False)
    with pytest.raises(EdgecnnError, match=message) as info:
        describe_file(tmp_path / "m.onnx")
    assert "\n" not in str(info.value)


def test_bad_files_and_options_are_one_line_from_the_cli(made_elsewhere, tmp_path):
    folder, _ = made_elsewhere
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a model" * 50)
    (tmp_path / "net.py").write_text("")
    cases = [(["bench", tmp_path / "junk.onnx"], "cannot be loaded by onnxruntime"),
             (["bench", tmp_path / "net.py"], "takes .onnx, .tflite and .pte model files made elsewhere"),
             (["bench", tmp_path / "missing.tflite"], "model file not found"),
             (["bench", folder / "plain.onnx", "--mean", "0.1,0.2"], "--mean needs 1 value"),
             (["bench", folder / "plain.onnx", "--std", "x"], "--std wants a comma list of numbers"),
             (["bench", "--mean", "0.5"], "--mean, --std and --layout describe model files made elsewhere"),
             (["bundle", "--file", folder / "plain.onnx", "--dataset", "cifar100"], "cifar100")]
    for args, message in cases:
        result = edgecnn(*args, "--exports-root", tmp_path / "artifacts", cwd=tmp_path)
        lines = [line for line in result.stderr.splitlines() if line.startswith("edgecnn: error:")]
        assert result.returncode != 0 and len(lines) == 1 and message in lines[0], (args, result.stderr[-800:])
        assert "Traceback" not in result.stderr
    assert not list((tmp_path / "artifacts").glob("*/export.json"))  # every refusal comes before a file is written
