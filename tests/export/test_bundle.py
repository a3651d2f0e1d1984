"""Deployment bundles: what they hold, the runner's commands inside them, hash checks and safe extraction."""

import io
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.export.bundle import extract_bundle, make_bundle, verify_bundle
from edgecnn.io import sha256_file


@pytest.fixture(scope="module")
def bundle(exported, trained_run, tmp_path_factory):
    report, export_dir, run = exported
    return make_bundle(export_dir, tmp_path_factory.mktemp("bundles") / "b", data_dir=trained_run[1])


def runner(folder, *args):
    return subprocess.run([sys.executable, str(folder / "runner.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=folder)


def test_bundle_holds_everything_a_device_needs(bundle, exported):
    report = exported[0]
    names = sorted(p.name for p in bundle.iterdir())
    assert names == ["README.md", "example.ppm", "labels.txt", "manifest.json", "model.fp32.ncnn", "model.fp32.onnx",
                     "model.fp32.tflite", "model.int8.ncnn", "model.int8.onnx", "model.int8.tflite", "requirements.txt",
                     "runner.py", "sample_images.npy", "sample_labels.npy"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["format"] == "edgecnn-bundle/2" and manifest["model"] == "vgg19-exp8"
    assert (bundle / "labels.txt").read_text().splitlines() == manifest["classes"] == report["data"]["classes"]
    assert set(manifest["files"]) == set(names) - {"manifest.json"}
    assert all(sha256_file(bundle / n) == h for n, h in manifest["files"].items())
    int8 = {a["file"]: a for a in manifest["artifacts"]}["model.int8.tflite"]
    assert int8["input"]["dtype"] == "int8" and int8["input"]["quantization"]["scale"] > 0
    # each file's own input layout, as export recorded it (the runner feeds each accordingly)
    assert {a["file"]: a["layout"] for a in manifest["artifacts"]} == {
        "model.fp32.onnx": "NCHW", "model.int8.onnx": "NCHW", "model.fp32.tflite": "NHWC", "model.int8.tflite": "NHWC",
        "model.fp32.ncnn": "NCHW", "model.int8.ncnn": "NCHW"}
    # each file's runtime, in the manifest and as its own section of requirements.txt
    assert {a["file"]: a["requires"] for a in manifest["artifacts"]}["model.int8.ncnn"] == ["ncnn>=1.0.20250503"]
    assert "# for model.fp32.ncnn, model.int8.ncnn\nncnn>=" in (bundle / "requirements.txt").read_text()
    assert "| model.int8.tflite | NHWC |" in (bundle / "README.md").read_text()  # what someone without the runner reads
    assert np.load(bundle / "sample_images.npy").dtype == np.uint8
    assert "\nimport torch" not in (bundle / "runner.py").read_text()  # only ExecuTorch's backend imports it
    assert (bundle.parent / "b.tar.gz").is_file()


def test_runner_eval_in_the_bundle_reproduces_the_export_accuracy(bundle, exported):
    result = runner(bundle, "eval", "--json")
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)["results"]
    for key in ("accuracy", "top5"):
        measured = {r["file"]: r[key] for r in results}
        exported_acc = {a["file"]: a[key] for a in exported[0]["artifacts"] if a["file"]}
        assert measured == pytest.approx(exported_acc, abs=1e-12)  # the sample is the whole (200-image) test split
    assert all(r["accuracy"] <= r["top5"] for r in results)


def test_runner_predict_and_bench(bundle, tmp_path):
    image = np.load(bundle / "sample_images.npy")[0]
    np.save(tmp_path / "one.npy", image)
    manifest = json.loads((bundle / "manifest.json").read_text())
    predicted = runner(bundle, "predict", tmp_path / "one.npy", "--model", "model.int8.tflite", "--top", 2, "--json")
    assert predicted.returncode == 0, predicted.stderr
    top = json.loads(predicted.stdout)["top"]
    assert len(top) == 2 and top[0]["class"] in manifest["classes"] and top[0]["score"] >= top[1]["score"]
    timed = runner(bundle, "bench", "model.int8.onnx", "--runs", 20, "--warmup", 2, "--threads", 1, "--json")
    assert timed.returncode == 0, timed.stderr
    stats = json.loads(timed.stdout)
    assert stats["runs"] == 20 and stats["min_ms"] <= stats["p50_ms"] <= stats["max_ms"]
    assert "onnxruntime" in stats["versions"] and stats["machine"]["arch"]


def test_a_changed_file_stops_the_runner(bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    data = bytearray((copy / "model.int8.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.int8.onnx").write_bytes(bytes(data))
    result = runner(copy, "eval")
    assert result.returncode == 2
    assert result.stderr.strip() == ("runner: error: bundle file model.int8.onnx does not match its sha256 in "
                                     "manifest.json (changed or corrupt)")
    with pytest.raises(EdgecnnError, match="does not match its sha256"):
        verify_bundle(copy)


def test_archive_round_trip(bundle, tmp_path):
    folder = extract_bundle(bundle.parent / "b.tar.gz", tmp_path)
    assert folder == tmp_path / "b" and verify_bundle(folder)["model"] == "vgg19-exp8"


def evil_archive(path, name, kind=tarfile.REGTYPE):
    with tarfile.open(path, "w:gz") as tar:
        member = tarfile.TarInfo(name)
        member.type = kind
        if kind == tarfile.SYMTYPE:
            member.linkname = "/etc/passwd"
            tar.addfile(member)
        else:
            member.size = 4
            tar.addfile(member, io.BytesIO(b"evil"))


@pytest.mark.parametrize("name,kind", [("b/../../escape.txt", tarfile.REGTYPE), ("/tmp/absolute.txt", tarfile.REGTYPE),
                                       ("b/link", tarfile.SYMTYPE)])
def test_archive_members_outside_the_bundle_are_refused(tmp_path, name, kind):
    evil_archive(tmp_path / "evil.tar.gz", name, kind)
    with pytest.raises(EdgecnnError, match="refusing to extract"):
        extract_bundle(tmp_path / "evil.tar.gz", tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists() and not list((tmp_path).glob("dest/**/link"))


def test_a_corrupt_archive_is_a_clear_error(tmp_path):
    (tmp_path / "bad.tar.gz").write_bytes(b"not gzip at all")
    with pytest.raises(EdgecnnError, match="is not a readable .tar.gz"):
        extract_bundle(tmp_path / "bad.tar.gz", tmp_path / "dest")


def test_bundle_cli(exported, trained_run, tmp_path):
    export_dir = exported[1]
    made = subprocess.run([sys.executable, "-m", "edgecnn", "bundle", "--export", str(export_dir), "--out",
                           str(tmp_path / "cli"), "--sample", "50", "--no-archive", "--data-dir", trained_run[1]],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["sample"]["count"] == 50
    assert not (tmp_path / "cli.tar.gz").exists()
    missing = subprocess.run([sys.executable, "-m", "edgecnn", "bundle", "--export", str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"edgecnn: error: {tmp_path} holds no export.json; run 'edgecnn export' first"


NCNN_FILES, ONNX_FILES, TFLITE_FILES = (["model.fp32.ncnn", "model.int8.ncnn"], ["model.fp32.onnx", "model.int8.onnx"],
                                        ["model.fp32.tflite", "model.int8.tflite"])


@pytest.mark.parametrize("runtime,runs,skipped", [("onnxruntime", ONNX_FILES, TFLITE_FILES + NCNN_FILES),
                                                  ("litert", TFLITE_FILES, ONNX_FILES + NCNN_FILES),
                                                  ("ncnn", NCNN_FILES, ONNX_FILES + TFLITE_FILES)])
def test_a_board_with_one_runtime_runs_the_files_it_can(bundle, device_python, tmp_path, runtime, runs, skipped):
    python = device_python(runtime)

    def run(*args):
        return subprocess.run([python, str(bundle / "runner.py"), *map(str, args)], capture_output=True, text=True,
                              timeout=300, cwd=bundle)

    evaluated = run("eval", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert [r["file"] for r in report["results"]] == runs and [s["file"] for s in report["skipped"]] == skipped
    assert "Traceback" not in evaluated.stderr and all(f"runner: skipped {f}: needs" in evaluated.stderr for f in skipped)
    np.save(tmp_path / "one.npy", np.load(bundle / "sample_images.npy")[0])
    assert run("predict", tmp_path / "one.npy").returncode == 0  # the default file is one this board can run
    timed = run("bench", "--runs", 3, "--warmup", 1, "--json")
    assert timed.returncode == 0 and json.loads(timed.stdout)["file"] == runs[0]
    missing = run("eval", "--model", skipped[0])
    package = "ai-edge-litert" if runtime == "onnxruntime" else "onnxruntime"  # skipped[0]'s runtime
    assert missing.returncode == 2
    assert missing.stderr.strip() == (f"runner: error: {skipped[0]} needs {package}, which is not installed here: "
                                      f"pip install {package}")


def test_the_manifest_must_agree_with_itself(bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["artifacts"][1]["sha256"] = "0" * 64  # edited: files{} still matches the bytes, artifacts[] does not
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = runner(copy, "verify")
    assert result.returncode == 2 and result.stderr.strip() == (
        f"runner: error: manifest.json disagrees with itself: {manifest['artifacts'][1]['file']}'s sha256 under "
        "artifacts is not the one its file list holds (an edited manifest)")
