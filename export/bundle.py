"""Deployment bundles: one folder (and a .tar.gz of it) that runs on a device with numpy + one runtime.

    <bundle>/
      manifest.json      schema, model, dataset, classes, input shape/layout/dtype, mean/std, every artifact with its
                         runtime, size, sha256, input/output quantisation and export accuracy; sha256 of every file
      model.*.onnx|tflite  the files `edgecnn export` wrote and measured
      labels.txt         one class name per line, in logit order
      sample_images.npy  uint8 (N, C, 32, 32) test images and sample_labels.npy: on-device accuracy
      example.pgm|ppm    the first sample image, for trying `runner.py predict` on the device
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
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgecnn import __version__
from edgecnn.errors import EdgecnnError
from edgecnn.io import atomic_write_bytes, atomic_write_text, folder_lock, sha256_file, tar_gz

from . import runner
from .record import ExportRecord

BUNDLE_FORMAT = "edgecnn-bundle/2"  # 2: the runner prints tables, JSON with --json; example image; pad_from
#: images in the sample of a bundle without a dataset (random inputs: latency and cross-device agreement only)
UNLABELLED_SAMPLE = 100
#: what a device installs to run a file of each kind (the runner's Backend for that suffix)
#: what each file suffix needs on the device besides numpy (ExecuTorch's Python runtime takes torch tensors)
RUNTIME_REQUIREMENTS = {".onnx": ("onnxruntime>=1.20",), ".tflite": ("ai-edge-litert>=1.2",),
                        ".ncnn": ("ncnn>=1.0.20250503",), ".pte": ("executorch>=1.5", "torch")}


def make_bundle(export_dir: str | Path, out_dir: str | Path, *, sample: int = 1000, data_dir: str | None = None,
                archive: bool = True, files: list[str] | None = None) -> Path:
    """Build a bundle from an export folder; returns the bundle folder (and writes <folder>.tar.gz beside it).
    The folder the bundle is written into is locked meanwhile, so two processes never build it at once. `files`
    limits it to those model files (a device's bundle: bench.harness.files_for_device chooses them)."""
    from edgecnn.data import load_recorded

    export_dir, out_dir = Path(export_dir), Path(out_dir)
    record = ExportRecord.read(export_dir)  # everything that can refuse comes before any file is written
    artifacts = [a for a in record.files() if files is None or a.file in files]
    if not artifacts:
        raise EdgecnnError(f"{record.path} lists no exported file that passed its check")
    for artifact in artifacts:
        file = export_dir / artifact.file
        if not file.is_file() or sha256_file(file) != artifact.sha256:
            raise EdgecnnError(f"{file} is missing or changed since export (sha256 differs from export.json)")
    if sample < 1:
        raise EdgecnnError("--sample must be at least 1")
    # foreign files benched without a dataset (export/foreign.py) have no labelled images to ship
    labelled = record.data.get("labelled", True)
    data = load_recorded(record.data, data_dir, what=f"the export in {export_dir}") if labelled else None
    with folder_lock(out_dir.parent, "bundle folder"):
        return _make_bundle(record, artifacts, data, out_dir, sample, archive)


def _make_bundle(record: ExportRecord, artifacts: list, data, out_dir: Path, sample: int, archive: bool) -> Path:
    export_dir, described = record.folder, record.data
    shape = described.get("image_shape") or [described["in_chans"], 32, 32]
    rng = np.random.default_rng(0)
    if data is not None:
        test = data.split("test")
        count = min(sample, len(test))
        index = np.sort(rng.choice(len(test), size=count, replace=False))
        images, labels = test.images[index].numpy(), test.labels[index].numpy().astype(np.int64)
    else:  # inputs for latency and cross-device agreement only; label -1: no accuracy
        count = min(sample, UNLABELLED_SAMPLE)
        images, labels = rng.integers(0, 256, (count, *shape), dtype=np.uint8), np.full(count, -1, np.int64)

    staging = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for artifact in artifacts:
        shutil.copyfile(export_dir / artifact.file, staging / artifact.file)
    _save_npy(staging / "sample_images.npy", images)
    _save_npy(staging / "sample_labels.npy", labels)
    (staging / "labels.txt").write_text("".join(f"{name}\n" for name in described["classes"]))
    (staging / "requirements.txt").write_text(requirements(a.file for a in artifacts))
    shutil.copyfile(runner.__file__, staging / "runner.py")
    example = _write_example(staging, images[0])
    (staging / "README.md").write_text(_readme(record, artifacts, count, example, out_dir.name))

    manifest = {
        "format": BUNDLE_FORMAT, "edgecnn_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "model": record.model, "dataset": described["dataset"], "classes": described["classes"],
        "input": {"shape": [1, *shape], "layout": "NCHW", "dtype": "uint8 image",
                  "mean": described["mean"], "std": described["std"], "pad_from": _padded_from(described),
                  "preprocessing": "x = (uint8 / 255 - mean) / std per channel, float32 NCHW",
                  "other_sizes": "an image of pad_from size is padded with black on every side as in training; "
                                 "any other size: the largest centred crop of the input's aspect ratio, resized "
                                 "with an antialiased bilinear filter"},
        "head_activation": record.head_activation,
        "example": {"image": example, "label": described["classes"][int(labels[0])] if labels[0] >= 0 else None},
        "sample": {"images": "sample_images.npy", "labels": "sample_labels.npy", "count": count,
                   "split": "test" if data is not None else "random (unlabelled)", "seed": 0,
                   "labelled": data is not None},
        "artifacts": [{"file": a.file, "format": a.format, "precision": a.precision, "form": a.form,
                       "mmacs": a.mmacs, "ops": a.ops,
                       "runtime": runner.BACKENDS[Path(a.file).suffix].runtime,
                       "requires": list(RUNTIME_REQUIREMENTS[Path(a.file).suffix]),
                       "layout": a.details.get("layout", "NCHW"), "bytes": a.bytes, "sha256": a.sha256,
                       **runner.open_model(str(staging / a.file), threads=1).io_details(),
                       "export_accuracy": a.accuracy, "export_agreement": a.agreement}
                      for a in artifacts],
        "export": {"split": record.split, "images": record.images,
                   "artifacts": [asdict(a) for a in record.artifacts]},
        "files": {p.name: sha256_file(p) for p in sorted(staging.iterdir())},
    }
    atomic_write_text(staging / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)  # the finished bundle appears at once; a crash leaves only the .partial folder
    if archive:
        atomic_write_bytes(out_dir.with_name(out_dir.name + ".tar.gz"), tar_gz(out_dir))
    return out_dir


def _padded_from(described: dict) -> list[int] | None:
    from edgecnn.data import DATASETS

    info = DATASETS.get(described.get("dataset", ""))
    return list(info.padded_from) if info and info.padded_from else None


def _write_example(folder: Path, image: np.ndarray) -> str:
    """The first sample image as binary PGM (one channel) or PPM (three), which the runner reads without Pillow."""
    channels, height, width = image.shape
    name = "example.pgm" if channels == 1 else "example.ppm"
    header = f"{'P5' if channels == 1 else 'P6'}\n{width} {height}\n255\n".encode()
    (folder / name).write_bytes(header + np.ascontiguousarray(image.transpose(1, 2, 0)).tobytes())
    return name


def requirements(files) -> str:
    """requirements.txt: numpy, then one section per runtime the bundle's files need (a device installs only the
    sections of the files it runs)."""
    by_runtime: dict[str, list[str]] = {}
    for file in files:
        by_runtime.setdefault(RUNTIME_REQUIREMENTS[Path(file).suffix], []).append(file)
    sections = "".join(f"\n# for {', '.join(names)}\n" + "".join(f"{line}\n" for line in requirement)
                       for requirement, names in by_runtime.items())
    return f"numpy>=1.24\n{sections}"


def bundle_is_current(export_dir: str | Path, folder: str | Path) -> bool:
    """Whether `folder` is a bundle of the export in `export_dir` made after its export record, with its archive
    beside it, and every file still matching its sha256."""
    folder = Path(folder)
    manifest, archive = folder / "manifest.json", folder.with_name(folder.name + ".tar.gz")
    record = Path(export_dir) / "export.json"
    if not (manifest.is_file() and archive.is_file() and record.is_file()
            and manifest.stat().st_mtime >= record.stat().st_mtime):
        return False
    try:
        verify_bundle(folder)
    except EdgecnnError:
        return False
    return True


def newest_bundle(root: str | Path) -> Path:
    """The bundle folder under `root` (one per export folder) whose manifest is the newest that verifies."""
    found = []
    for manifest in Path(root).glob("*/bundle/manifest.json"):
        try:
            created = json.loads(manifest.read_text()).get("created", "")
        except (OSError, ValueError, AttributeError):
            continue
        found.append((str(created), manifest.parent))
    for _, folder in sorted(found, reverse=True):
        try:
            verify_bundle(folder)
            return folder
        except EdgecnnError:
            continue
    raise EdgecnnError(f"no bundle under {root}/; make one with 'edgecnn export --model NAME --int8' (it writes "
                       "<export>/bundle), or pass --bundle DIR|TAR")


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    path.write_bytes(buffer.getvalue())


def unpack_cached(archive: str | Path, cache: str | Path) -> Path:
    """The bundle folder of an archive, unpacked once into `cache/<archive hash>/`: into a temporary folder first,
    renamed into place only when complete and verified; a cached folder that does not verify (an unpacking that
    was killed half-way, a file changed since) is unpacked again."""
    archive, cache = Path(archive), Path(cache)
    if not archive.name.endswith((".tar.gz", ".tgz")):
        raise EdgecnnError(f"{archive} is neither a bundle folder nor a .tar.gz")
    try:
        target = cache / sha256_file(archive)[:16]
    except OSError as error:
        raise EdgecnnError(f"cannot read {archive}: {error.strerror or error}") from error
    found = _verified_child(target)
    if found:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=cache))
    try:
        folder = extract_bundle(archive, staging)
        if target.exists():
            shutil.rmtree(target)  # the damaged copy found above
        try:
            staging.rename(target)
        except OSError:  # another process put a complete copy there meanwhile
            found = _verified_child(target)
            if found:
                return found
            raise EdgecnnError(f"cannot unpack {archive} into {target}") from None
        return target / folder.name
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _verified_child(folder: Path) -> Path | None:
    """The one bundle folder inside `folder` if it verifies, else None."""
    children = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    if len(children) != 1:
        return None
    try:
        verify_bundle(children[0])
    except EdgecnnError:
        return None
    return children[0]


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


@dataclass(frozen=True)
class Manifest:
    """A bundle's manifest.json, read only after every file's sha256 was checked: the one reader every later stage
    (bench, report) uses."""

    folder: Path
    model: str
    dataset: str
    classes: list
    input: dict
    artifacts: list  # one dict per model file: file, format, precision, runtime, requires, layout, sha256, ...
    sample: dict
    created: str
    digest: str  # sha256 of manifest.json itself
    format: str = BUNDLE_FORMAT
    example: dict = field(default_factory=dict)  # {"image": file name, "label": its class} (format 2 on)

    @classmethod
    def read(cls, folder: str | Path) -> Manifest:
        folder = Path(folder)
        try:
            raw = runner.verify_bundle(str(folder))
        except runner.BundleError as error:
            raise EdgecnnError(f"bundle {folder}: {error}") from None
        kinds = {"model": str, "dataset": str, "classes": list, "input": dict, "sample": dict}
        wrong = next((k for k, kind in kinds.items() if not isinstance(raw.get(k), kind)), None)
        if wrong:
            raise EdgecnnError(f"bundle {folder}: manifest.json is damaged ({wrong!r} is missing or malformed)")
        return cls(folder, raw["model"], raw["dataset"], raw["classes"], raw["input"], raw["artifacts"],
                   raw["sample"], str(raw.get("created", "")), sha256_file(folder / "manifest.json"),
                   str(raw.get("format", "")), raw.get("example") if isinstance(raw.get("example"), dict) else {})

    def json_flag(self) -> list[str]:
        """What makes this bundle's own runner print JSON: `--json`, except in bundles of format 1, whose runner
        printed JSON only and knows no such option."""
        return [] if self.format == "edgecnn-bundle/1" else ["--json"]

    @property
    def bundle_id(self) -> str:
        """The bundle's name on devices and in the results store: model and the manifest's hash, so two different
        bundles never share a folder or a row."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.model)
        return f"{safe}-{self.digest[:12]}"


def _readme(record: ExportRecord, artifacts: list, count: int, example: str, folder_name: str) -> str:
    shape = record.data.get("image_shape") or [record.data["in_chans"], 32, 32]
    size = f"{shape[1]}x{shape[2]}"
    padded = _padded_from(record.data)
    fitting = (f"A {padded[0]}x{padded[1]} image is padded with black to {size} exactly as training did; any other "
               if padded else "An image of any other ") + \
        "size is fitted: its largest centred crop of the bundle's aspect ratio, resized (antialiased bilinear)."
    if not record.data.get("labelled", True):
        measured = "No dataset was given: the sample is random images, and no accuracy was measured."
    else:
        measured = f"Accuracy measured at export on the whole {record.split} split ({record.images} images):"

    def percent(value):
        return "-" if value is None else f"{value:.2%}"

    rows = "\n".join(f"| {a.file} | {a.details.get('layout', 'NCHW')} | {percent(a.accuracy)} | {percent(a.agreement)} |"
                     for a in artifacts)
    first = artifacts[0].file
    return f"""# {record.model} ({record.dataset}) — edgecnn deployment bundle

A self-contained folder: the model files, `runner.py` (numpy and one inference runtime; no torch, no edgecnn),
`manifest.json` (input shape, mean/std, classes, the sha256 of every file), `labels.txt`, {count} sample test images
and `{example}`, one of them as an image file.

## Run it on a board with only scp and ssh

From the machine that built it (`pi@raspberrypi.local` stands for your board's login):

    scp {folder_name}.tar.gz pi@raspberrypi.local:
    ssh pi@raspberrypi.local
    mkdir -p ~/{record.model} && tar -xzf {folder_name}.tar.gz -C ~/{record.model} --strip-components=1
    cd ~/{record.model}
    python3 -m pip install -r requirements.txt    # numpy + only the runtime section(s) of the files you run

(On Raspberry Pi OS, pip installs into a virtual environment: `python3 -m venv ~/venv && . ~/venv/bin/activate`
first.) `edgecnn deploy --device NAME` does the copy, unpacks, verifies and checks the runtimes for you, and
prints these commands with the folder it used.

## Commands

    python3 runner.py verify                 # sha256 of every file against manifest.json
    python3 runner.py eval                   # top-1/top-5 of every file whose runtime is installed, on the sample
    python3 runner.py predict {example}      # top classes of one image (.npy, .pgm/.ppm, or any file Pillow reads)
    python3 runner.py predict IMAGE --model {first}
    python3 runner.py bench {first} --threads 4    # latency p50/p90/p99, peak memory

Each prints a table; add `--json` for one JSON object (scripts). Every command verifies the hashes first and
refuses a bundle whose files changed. Inputs are uint8 images of {size}; the runner normalizes them (mean/std in
manifest.json), lays them out as each file takes them (NCHW, or channel-last NHWC for TFLite files) and quantizes
them itself for int8 files. {fitting}

{measured}

| file | input layout | accuracy | top-1 agreement with PyTorch fp32 |
|---|---|---|---|
{rows}
"""


def bundles_of(export_dir: str | Path) -> list[Path]:
    """The bundle folders made from an export folder (bundle/, bundle-<device>/) whose manifest exists."""
    return sorted(path.parent for path in Path(export_dir).glob("bundle*/manifest.json"))


def check_replaceable(export_dir: str | Path, force: bool) -> None:
    """Refuse to export into a folder whose files a bundle (and so any bench row of it) refers to, unless
    `force` (the caller then removes those bundles with remove_bundles once the new files are written; until
    then the old bundles' sha256 lists refuse the changed files)."""
    bundles = bundles_of(export_dir)
    if bundles and not force:
        raise EdgecnnError(f"{export_dir} already holds an export with a bundle ({bundles[0].name}/), and bench "
                           "results refer to its files: --force replaces them (the report then leaves the old "
                           "measurements out), --out DIR exports elsewhere")


def remove_bundles(export_dir: str | Path) -> None:
    """Remove every bundle folder (and its archive) of an export folder whose files were replaced."""
    import shutil

    for folder in bundles_of(export_dir):
        shutil.rmtree(folder)
        Path(f"{folder}.tar.gz").unlink(missing_ok=True)
