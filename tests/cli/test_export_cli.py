"""`edgecnn export` from the command line: the table, export.json, and one-line errors for user mistakes."""

import json
import shutil
import subprocess
import sys

import pytest


def edgecnn(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "edgecnn", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


#: what a converter's own logging or warnings look like on stderr; edgecnn's progress lines have none of these
NOISE = ("WARNING", "Warning", "absl", "oneDNN", "pytree", "training mode", "I0000", "W0000", "E0000", "deprecated",
         "INFO:", "Traceback")


def test_export_of_a_run_prints_the_table_and_writes_the_files(trained_run, tmp_path):
    """ONNX and TFLite, fp32 and int8: the table on stdout, and on stderr edgecnn's own progress lines only, no
    converter's log line or warning a user can do nothing about (each silenced where it starts)."""
    run, data_dir = trained_run
    result = edgecnn("export", "--model", "vgg19-exp8", "--runs-dir", run.path.parent, "--data-dir", data_dir,
                     "--formats", "onnx,tflite", "--forms", "op-minimal", "--int8", "--calib-samples", 64,
                     "--calib-method", "percentile", "--out", tmp_path / "out", "--no-bundle")
    assert result.returncode == 0, result.stderr
    names = ["pytorch-fp32", "onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"]
    for name in names:
        assert name in result.stdout
    assert "calibrating onnx-int8 (64 images)" in result.stderr  # progress, as plain lines when piped
    assert [line for line in result.stderr.splitlines() if any(word in line for word in NOISE)] == []
    report = json.loads((tmp_path / "out" / "export.json").read_text())
    assert sorted(r["name"] for r in report["artifacts"]) == sorted(names)
    assert report["calibration"] == {"split": "train", "images": 64, "seed": 0, "method": "percentile"}


def test_default_output_folder_is_named_after_the_run(trained_run, tmp_path):
    run, data_dir = trained_run
    result = edgecnn("export", "--run", run.path, "--data-dir", data_dir, "--formats", "onnx", "--json",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["artifacts"][1]["status"] == "ok"
    assert (tmp_path / "artifacts" / run.path.name / "model.fp32.onnx").is_file()


def test_clean_head_export_derives_a_run_once_and_exports_it(trained_run, tmp_path):
    run, data_dir = trained_run  # vgg19-exp8: ReLU on the logits
    args = ("export", "--run", run.path, "--data-dir", data_dir, "--formats", "onnx", "--head", "clean",
            "--runs-dir", tmp_path / "runs", "--no-bundle")
    first = edgecnn(*args, "--out", tmp_path / "first")
    assert first.returncode == 0, first.stderr
    derived = tmp_path / "runs" / f"{run.path.name}-head-clean"
    assert "clean head fitted" in first.stderr and (derived / "best.pt").is_file()
    report = json.loads((tmp_path / "first" / "export.json").read_text())
    assert report["head"] == "clean" and report["head_activation"] is None
    assert report["checkpoint"] == str(derived / "best.pt")
    second = edgecnn(*args, "--out", tmp_path / "second")
    assert second.returncode == 0, second.stderr
    assert "using the clean head fitted before" in second.stderr  # reused, not fitted again
    (derived / "result.json").unlink()  # as an interrupted fit leaves it
    third = edgecnn(*args, "--out", tmp_path / "third")
    assert third.returncode == 2 and "has no result.json" in third.stderr and len(third.stderr.splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["export", "-m", "exp13", "--runs-dir", "{tmp}"], "no finished run of resnet101-exp13 in {tmp}; train one with "
                                                       "'edgecnn train --model resnet101-exp13 --dataset fashion-mnist'"),
    (["export", "-m", "exp99", "--runs-dir", "{tmp}"], "unknown model 'exp99'"),
    (["export", "--checkpoint", "{tmp}/missing.pt"], "checkpoint not found"),
    (["export", "--checkpoint", "{tmp}/corrupt.pt"], "is not a readable checkpoint"),
    (["export", "--checkpoint", "{tmp}/corrupt.pt", "--calib-method", "entropy"], "--calib-method must be one of"),
    (["export", "--checkpoint", "{tmp}/corrupt.pt", "--formats", "onnx,coreml"], "unknown format coreml"),
    (["export"], "say which model"),
    (["export", "--checkpoint", "{tmp}/corrupt.pt", "--ghost-int8", "merge"], "--ghost-int8 must be one of"),
    (["export", "--checkpoint", "{tmp}/corrupt.pt", "--head", "plain"], "--head must be faithful or clean"),
    (["export", "--checkpoint", "{tmp}/corrupt.pt", "--tflite-layout", "CHW"], "--tflite-layout must be one of NHWC, NCHW, not 'CHW'"),
])
def test_user_mistakes_are_one_line_errors(args, message, tmp_path):
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 not really a zip")
    result = edgecnn(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2
    assert result.stderr.strip() == f"edgecnn: error: {message.replace('{tmp}', str(tmp_path))}" or \
        (result.stderr.startswith("edgecnn: error: ") and message.replace("{tmp}", str(tmp_path)) in result.stderr
         and len(result.stderr.strip().splitlines()) == 1)


def test_an_export_with_a_bundle_is_replaced_only_with_force(trained_run, tmp_path):
    run, data_dir = trained_run
    args = ("export", "--run", run.path, "--data-dir", data_dir, "--formats", "onnx", "--forms", "op-minimal",
            "--out", tmp_path / "out")
    first = edgecnn(*args)
    assert first.returncode == 0, first.stderr
    manifest = tmp_path / "out" / "bundle" / "manifest.json"
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "out").rglob("*") if path.is_file()}
    refused = edgecnn(*args)
    assert refused.returncode == 2 and "--force replaces them" in refused.stderr and "Traceback" not in refused.stderr
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "out").rglob("*") if path.is_file()} == before
    (tmp_path / "out" / "bundle-rpi4").mkdir()  # a device bundle of the same files goes with them
    shutil.copy(manifest, tmp_path / "out" / "bundle-rpi4" / "manifest.json")
    forced = edgecnn(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert manifest.stat().st_mtime_ns > before[manifest] and not (tmp_path / "out" / "bundle-rpi4").exists()
