"""Deployment bundles: one folder (and a .tar.gz of it) that runs on a device with numpy + one runtime.

    <bundle>/
      manifest.json      schema, model, dataset, classes, input shape/layout/dtype, mean/std, every artifact with its
                         runtime, size, sha256, input/output quantisation and export accuracy; sha256 of every file
      model.*.onnx|tflite  the files `edgecnn export` wrote and measured
      labels.txt         one class name per line, in logit order
      sample_images.npy  uint8 (N, C, 32, 32) test images and sample_labels.npy: on-device accuracy
      requirements.txt   what the device needs
      runner.py          export/runner.py: verifies the hashes, then predict / eval / bench
      README.md

Reads only the export stage's files (export.json and the model files) plus the dataset they name.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np

from edgecnn import __version__
from edgecnn.errors import EdgecnnError
from edgecnn.io import atomic_write_bytes, atomic_write_text, sha256_file

from . import runner

BUNDLE_FORMAT = "edgecnn-bundle/1"
REQUIREMENTS = "numpy>=1.24\nonnxruntime>=1.20    # for .onnx files\nai-edge-litert>=1.2  # for .tflite files\n"


def _io_details(path: Path) -> dict:
    """Input/output dtype and quantisation of a model file, read by its runtime (what the device will see)."""
    model = runner.open_model(str(path), threads=1)
    if isinstance(model, runner.LiteRTBackend):
        def describe(d):
            scale, zero = d["quantization"]
            return {"shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                    "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None}
        return {"input": describe(model.input), "output": describe(model.output)}
    inp, out = model.session.get_inputs()[0], model.session.get_outputs()[0]
    return {"input": {"name": inp.name, "shape": [d if isinstance(d, int) else "N" for d in inp.shape],
                      "dtype": "float32", "quantization": None},
            "output": {"name": out.name, "shape": [d if isinstance(d, int) else "N" for d in out.shape],
                       "dtype": "float32", "quantization": None}}


def make_bundle(export_dir: str | Path, out_dir: str | Path, *, sample: int = 1000, data_dir: str | None = None,
                archive: bool = True) -> Path:
    """Build a bundle from an export folder; returns the bundle folder (and writes <folder>.tar.gz beside it)."""
    from edgecnn.data import load_dataset

    export_dir, out_dir = Path(export_dir), Path(out_dir)
    report_path = export_dir / "export.json"
    if not report_path.is_file():
        raise EdgecnnError(f"{export_dir} holds no export.json; run 'edgecnn export' first")
    try:
        report = json.loads(report_path.read_text())
    except ValueError as error:
        raise EdgecnnError(f"{report_path} is not valid JSON: {error}") from error
    artifacts = [a for a in report["artifacts"] if a["file"] and a["status"] == "ok"]
    if not artifacts:
        raise EdgecnnError(f"{report_path} lists no exported file that passed its check")
    for artifact in artifacts:
        file = export_dir / artifact["file"]
        if not file.is_file() or sha256_file(file) != artifact["sha256"]:
            raise EdgecnnError(f"{file} is missing or changed since export (sha256 differs from export.json)")

    described = report["data"]
    data = load_dataset(described["dataset"], data_dir, in_chans=described["in_chans"])
    test = data.split("test")
    count = min(sample, len(test))
    index = np.sort(np.random.default_rng(0).choice(len(test), size=count, replace=False))

    staging = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for artifact in artifacts:
        shutil.copyfile(export_dir / artifact["file"], staging / artifact["file"])
    _save_npy(staging / "sample_images.npy", test.images[index].numpy())
    _save_npy(staging / "sample_labels.npy", test.labels[index].numpy().astype(np.int64))
    (staging / "labels.txt").write_text("".join(f"{name}\n" for name in described["classes"]))
    (staging / "requirements.txt").write_text(REQUIREMENTS)
    shutil.copyfile(runner.__file__, staging / "runner.py")
    (staging / "README.md").write_text(_readme(report, artifacts, count))

    manifest = {
        "format": BUNDLE_FORMAT, "edgecnn_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "model": report["model"], "dataset": described["dataset"], "classes": described["classes"],
        "input": {"shape": [1, described["in_chans"], 32, 32], "layout": "NCHW", "dtype": "uint8 image",
                  "mean": described["mean"], "std": described["std"],
                  "preprocessing": "x = (uint8 / 255 - mean) / std per channel, float32 NCHW"},
        "head_activation": report.get("head_activation"),
        "sample": {"images": "sample_images.npy", "labels": "sample_labels.npy", "count": count,
                   "split": "test", "seed": 0},
        "artifacts": [{"file": a["file"], "format": a["format"], "precision": a["precision"],
                       "runtime": runner.BACKENDS[Path(a["file"]).suffix].runtime,
                       "layout": a.get("details", {}).get("layout", "NCHW"),
                       "bytes": a["bytes"], "sha256": a["sha256"], **_io_details(staging / a["file"]),
                       "export_accuracy": a["accuracy"], "export_agreement": a["agreement"]}
                      for a in artifacts],
        "export": {"split": report["split"], "images": report["images"], "artifacts": report["artifacts"]},
        "files": {p.name: sha256_file(p) for p in sorted(staging.iterdir())},
    }
    atomic_write_text(staging / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)  # the finished bundle appears at once; a crash leaves only the .partial folder
    if archive:
        atomic_write_bytes(out_dir.with_name(out_dir.name + ".tar.gz"), tar_gz(out_dir))
    return out_dir


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    path.write_bytes(buffer.getvalue())


def tar_gz(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=f"{folder.name}/{path.name}", recursive=False)
    return buffer.getvalue()


def extract_bundle(archive: str | Path, dest: str | Path) -> Path:
    """Unpack a bundle archive into dest, refusing any member that is not a plain file or folder inside dest."""
    archive, dest = Path(archive), Path(dest).resolve()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                target = (dest / member.name).resolve()
                if not (member.isfile() or member.isdir()) or not target.is_relative_to(dest) or target == dest:
                    raise EdgecnnError(f"{archive} holds {member.name!r}, which is not a file inside the bundle; "
                                       "refusing to extract")
            tops = {Path(m.name).parts[0] for m in members}
            if len(tops) != 1:
                raise EdgecnnError(f"{archive} is not a bundle archive (expected one top folder, found {len(tops)})")
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise EdgecnnError(f"{archive} is not a readable .tar.gz: {error}") from error
    folder = dest / tops.pop()
    verify_bundle(folder)
    return folder


def verify_bundle(folder: str | Path) -> dict:
    """The runner's own check (manifest hashes), raised as a one-line edgecnn error."""
    try:
        return runner.verify_bundle(str(folder))
    except runner.BundleError as error:
        raise EdgecnnError(str(error)) from error


def _readme(report: dict, artifacts: list[dict], count: int) -> str:
    rows = "\n".join(f"| {a['file']} | {a.get('details', {}).get('layout', 'NCHW')} | {a['accuracy']:.2%} | "
                     f"{a['agreement']:.2%} |" for a in artifacts)
    return f"""# {report['model']} ({report['dataset']}) — edgecnn deployment bundle

On the device: `pip install -r requirements.txt` (only the runtime you use is needed), then

    python runner.py verify                          # sha256 of every file against manifest.json
    python runner.py eval                            # accuracy of every model file on the {count} sample images
    python runner.py predict IMAGE [--model FILE]    # IMAGE: .npy (uint8, HxW or CxHxW), .pgm/.ppm, or any file PIL reads
    python runner.py bench [FILE] --runs 200 --warmup 30 --threads 2

Every command verifies the hashes first and refuses a bundle whose files changed. Inputs are uint8 images of
32x32; the runner normalizes them (mean/std in manifest.json), lays them out as each file takes them (NCHW, or
channel-last NHWC for TFLite files; manifest.json says per file) and quantizes them itself for int8 files.

Accuracy measured at export on the whole {report['split']} split ({report['images']} images):

| file | input layout | accuracy | top-1 agreement with PyTorch fp32 |
|---|---|---|---|
{rows}
"""
