"""`edgecnn compress prune|structured|distill|qat` end to end on a tiny generated dataset: each writes a run with
its lineage that `edgecnn export` takes unchanged."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgecnn.compress.methods.unstructured import expected_nonzero
from edgecnn.compress.train import TrainConfig, train
from edgecnn.data import write_synthetic_cifar
from edgecnn.report import collect
from edgecnn.runs import Run

BUDGET = ["--images-per-epoch", "96", "--batch-size", "32", "--threads", "1"]


def edgecnn(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "edgecnn", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _short_run(shared, key: str, model: str, *, train_size: int, test_size: int, seed: int, **options) -> tuple:
    """(Run, data dir): `model` briefly trained on generated CIFAR-10 files, built once per test session."""
    def build(root: Path) -> None:
        write_synthetic_cifar(root / "data", 10, train_size=train_size, test_size=test_size, seed=seed)
        train(TrainConfig(model=model, dataset="cifar10", recipe="fast", data_dir=str(root / "data"),
                          runs_dir=str(root / "runs"), name="parent", batch_size=32, **options))

    root = shared(key, build)
    return Run(root / "runs" / "parent"), str(root / "data")


@pytest.fixture(scope="module")
def parent(shared):
    """vgg19-exp10 (depthwise separable VGG, 342k params; prunable, unlike the shuffled vgg19-exp8) briefly trained."""
    return _short_run(shared, "compress-parent", "vgg19-exp10", train_size=400, test_size=100, seed=3, epochs=2,
                      lr=0.05)


def _lineage(folder: Path, method: str, parent_run: Run) -> dict:
    config = json.loads((folder / "config.json").read_text())
    assert config["lineage"]["method"] == method
    assert config["lineage"]["parent"] == str(parent_run.path)
    assert json.loads((folder / "result.json").read_text())["status"] == "finished"
    return config


def _export(folder: Path, data_dir: str, out: Path, *args) -> dict:
    result = edgecnn("export", "--run", folder, "--data-dir", data_dir, "--out", out, "--calib-samples", 64, "--forms", "op-minimal",
                     *args)  # one graph form: what these tests check is the run, not the forms
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "export.json").read_text())
    assert all(a["status"] == "ok" for a in report["artifacts"]), report["artifacts"]
    return report


def test_structured_pruning_makes_a_smaller_run_that_exports_to_onnx_and_tflite(parent, tmp_path):
    parent_run, data_dir = parent
    result = edgecnn("compress", "structured", "--run", parent_run.path, "--data-dir", data_dir, "--ratio", 0.5,
                     "--steps", 2, "--max-epochs", 1, *BUDGET, "--runs-dir", tmp_path, "--name", "pruned")
    assert result.returncode == 0, result.stderr
    assert "structured pruning" in result.stdout and "FLOPs cut" in result.stdout
    folder = tmp_path / "pruned"
    _lineage(folder, "structured", parent_run)
    rows = json.loads((folder / "structured.json").read_text())
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert rows[0]["params"] == parent_run.config["params"]
    assert rows[0]["params"] > rows[1]["params"] > rows[2]["params"]
    # half the channels: 4x fewer FLOPs in pointwise convs, 2x in depthwise ones, the stem keeps its input
    assert rows[0]["mflops"] / rows[2]["mflops"] >= 1.8
    assert (folder / "steps" / "step-01.pt").is_file()
    report = _export(folder, data_dir, tmp_path / "out", "--formats", "onnx,tflite")
    accuracy = {a["name"]: a["accuracy"] for a in report["artifacts"]}
    assert accuracy["onnx-fp32"] == accuracy["tflite-fp32"] == accuracy["pytorch-fp32"]
    assert report["artifacts"][0]["accuracy"] == pytest.approx(json.loads((folder / "result.json").read_text())
                                                                ["test_acc"])


def test_paper_pruning_steps_follow_the_arithmetic_and_export_compresses(parent, tmp_path):
    parent_run, data_dir = parent
    result = edgecnn("compress", "prune", "--run", parent_run.path, "--data-dir", data_dir, "--steps", 3,
                     "--max-epochs", 1, *BUDGET, "--runs-dir", tmp_path, "--name", "sparse")
    assert result.returncode == 0, result.stderr
    assert "non-zero" in result.stdout
    folder = tmp_path / "sparse"
    _lineage(folder, "prune", parent_run)
    rows = json.loads((folder / "pruning.json").read_text())
    model = parent_run.path / "best.pt"
    state = torch.load(model, weights_only=True)["state_dict"]
    conv = sum(v.numel() for k, v in state.items() if k.endswith("weight") and v.ndim == 4)
    linear = sum(v.numel() for k, v in state.items() if k.endswith("weight") and v.ndim == 2)
    assert [r["nonzero"] for r in rows[1:]] == expected_nonzero(conv, linear, 3)
    assert [round(r["sparsity"], 3) for r in rows[1:]] == [0.2, 0.36, 0.488]
    assert len(list((folder / "steps").glob("step-*.pt"))) == 3
    sparse = _export(folder, data_dir, tmp_path / "sparse-out", "--formats", "onnx")["artifacts"][1]
    dense = _export(parent_run.path, data_dir, tmp_path / "dense-out", "--formats", "onnx")["artifacts"][1]
    assert sparse["bytes"] == pytest.approx(dense["bytes"], rel=0.01)  # zeros shrink nothing in a dense file...
    assert sparse["gzip_bytes"] / sparse["bytes"] < dense["gzip_bytes"] / dense["bytes"] - 0.2  # ...but compress


def test_distillation_trains_a_student_run(parent, tmp_path):
    parent_run, data_dir = parent
    result = edgecnn("compress", "distill", "--run", parent_run.path, "--data-dir", data_dir, "--student", "vgg19-exp9",
                     "--epochs", 2, "--temperature", 3, *BUDGET, "--runs-dir", tmp_path, "--name", "student")
    assert result.returncode == 0, result.stderr
    config = _lineage(tmp_path / "student", "distill", parent_run)
    assert config["model"] == "vgg19-exp9" and config["lineage"]["settings"]["temperature"] == 3
    assert torch.load(tmp_path / "student" / "best.pt", weights_only=True)["model"] == "vgg19-exp9"
    assert len((tmp_path / "student" / "metrics.jsonl").read_text().splitlines()) == 2
    _export(tmp_path / "student", data_dir, tmp_path / "out", "--formats", "onnx")


def test_qat_leaves_weights_on_the_int8_grid_and_exports_int8(parent, tmp_path):
    parent_run, data_dir = parent
    result = edgecnn("compress", "qat", "--run", parent_run.path, "--data-dir", data_dir, "--epochs", 1, *BUDGET,
                     "--runs-dir", tmp_path, "--name", "qat")
    assert result.returncode == 0, result.stderr
    _lineage(tmp_path / "qat", "qat", parent_run)
    state = torch.load(tmp_path / "qat" / "best.pt", weights_only=True)["state_dict"]
    for key, weight in state.items():
        if key.endswith("weight") and weight.ndim in (2, 4):
            flat = weight.flatten(1).double()
            steps = flat / (flat.abs().amax(1, keepdim=True).clamp_min(1e-8) / 63)
            assert np.allclose(steps.numpy(), steps.round().numpy(), atol=1e-3), key
    report = _export(tmp_path / "qat", data_dir, tmp_path / "out", "--formats", "onnx", "--int8")
    assert [a["name"] for a in report["artifacts"]] == ["pytorch-fp32", "onnx-fp32", "onnx-int8"]


@pytest.mark.parametrize("args,message", [
    (["structured", "--run", "{exp8}"], "nothing in vgg19-exp8 can be pruned structurally"),
    (["distill", "--run", "{parent}", "--student", "exp99"], "unknown model 'exp99'"),
    (["prune", "--checkpoint", "{tmp}/missing.pt"], "checkpoint not found"),
    (["structured", "--run", "{parent}", "--importance", "taylor"], "unknown importance 'taylor'"),
])
def test_user_mistakes_are_one_line_errors(args, message, parent, trained_run, tmp_path):
    names = {"{exp8}": str(trained_run[0].path), "{parent}": str(parent[0].path), "{tmp}": str(tmp_path)}

    def fill(text):
        for key, value in names.items():
            text = text.replace(key, value)
        return text

    result = edgecnn("compress", *map(fill, args), "--runs-dir", tmp_path)  # each run finds the data it recorded
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("edgecnn: error: ") and fill(message) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def residual_parent(shared):
    """exp13 (ghost bottlenecks, 33 residual blocks) trained for one short epoch: depth pruning needs residuals."""
    return _short_run(shared, "compress-residual-parent", "exp13", train_size=200, test_size=60, seed=4, epochs=1,
                      threads=1)


def test_depth_pruning_removes_blocks_and_the_run_exports(residual_parent, tmp_path):
    parent_run, data_dir = residual_parent
    result = edgecnn("compress", "depth", "--run", parent_run.path, "--data-dir", data_dir, "--blocks", 6,
                     "--scan-images", 100, "--max-epochs", 1, *BUDGET, "--runs-dir", tmp_path, "--name", "shallow")
    assert result.returncode == 0, result.stderr
    assert "6 blocks removed" in result.stdout
    folder = tmp_path / "shallow"
    config = _lineage(folder, "depth", parent_run)
    removed = config["lineage"]["settings"]["removed"]
    scanned = json.loads((folder / "sensitivity.json").read_text())
    assert len(removed) == 6 and len(scanned) == 28  # every exp13 block with an identity shortcut
    assert torch.load(folder / "best.pt", weights_only=True)["removed_blocks"] == removed
    rows = json.loads((folder / "depth.json").read_text())
    assert rows[0]["params"] == parent_run.config["params"] > rows[1]["params"]
    [curve] = collect(runs_dir=tmp_path).pruning  # the report draws it next to the other pruning curves
    assert curve == {"run": "shallow", "kind": "depth", "rows": rows}
    report = _export(folder, data_dir, tmp_path / "out", "--formats", "onnx")
    accuracy = {a["name"]: a["accuracy"] for a in report["artifacts"]}
    assert accuracy["onnx-fp32"] == accuracy["pytorch-fp32"] == pytest.approx(
        json.loads((folder / "result.json").read_text())["test_acc"])


def test_depth_pruning_errors_are_one_line(trained_run, residual_parent, tmp_path):
    vgg_run, vgg_data = trained_run
    refused = edgecnn("compress", "depth", "--run", vgg_run.path, "--data-dir", vgg_data, "--runs-dir", tmp_path)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "edgecnn: error: vgg19-exp8 has no residual block with an identity shortcut to remove"]
    parent_run, data_dir = residual_parent
    too_many = edgecnn("compress", "depth", "--run", parent_run.path, "--data-dir", data_dir, "--blocks", 28,
                       "--runs-dir", tmp_path)
    assert too_many.returncode == 2 and too_many.stderr.strip().splitlines() == [
        "edgecnn: error: --blocks must be between 1 and 27: resnet101-exp13 has 28 removable blocks"]
