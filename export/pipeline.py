"""Export a trained checkpoint to every requested file and measure each file's accuracy through its own runtime.

Reads only the compress stage's files (a checkpoint and the dataset it names); writes the model files and
`export.json` into one folder. `export.json` is rewritten (atomically) after every artifact, so an interrupted export
keeps what it finished. A conversion that fails becomes a row with its reason; the other files still export.

Adding a format means one module beside this one and one entry in FORMATS.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgecnn import __version__
from edgecnn.data import Dataset, load_dataset
from edgecnn.errors import EdgecnnError
from edgecnn.io import atomic_write_text, sha256_file
from edgecnn.runs import build_from_checkpoint, load_checkpoint

from . import onnx as onnx_format
from . import tflite as tflite_format
from .runner import open_model, predict_batches

EXPORT_FORMAT = "edgecnn-export/1"
CALIBRATION_SEED = 0


@dataclass(frozen=True)
class ExportOptions:
    formats: tuple[str, ...] = ("onnx", "tflite")
    int8: bool = False
    calib_samples: int = 1000
    calib_method: str = "minmax"
    onnx_scheme: str = "u8s8"
    split: str = "test"
    threads: int | None = None  # runtime threads while measuring accuracy (None: the runtime's default)
    # export/reparam.py's rewrite of the ghost modules, per precision (exact; the README has the measurements)
    ghost_fp32: str = "auto"
    ghost_int8: str = "depthwise"
    tflite_layout: str = "NHWC"  # TFLite input layout: channel-last saves the converter's input TRANSPOSE/RESHAPE


@dataclass
class Artifact:
    """One row of the export table: a file, or the reason it could not be made."""

    name: str
    format: str
    precision: str
    file: str | None = None
    status: str = "pending"
    error: str | None = None
    bytes: int | None = None
    gzip_bytes: int | None = None  # where pruning's zeros pay: a sparse model's file compresses, a dense one barely
    sha256: str | None = None
    export_seconds: float | None = None
    accuracy: float | None = None
    agreement: float | None = None  # top-1 agreement with the PyTorch fp32 model
    logit_mae: float | None = None  # mean |logit - PyTorch logit|
    logit_max_err: float | None = None
    top1_ties: int | None = None  # images whose two highest logits are equal (the ReLU6-on-logits quirk)
    eval_seconds: float | None = None
    details: dict = field(default_factory=dict)


class Progress:
    """What the pipeline tells its caller; the CLI draws rich bars, the library default stays quiet."""

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda n: None

    def note(self, message: str) -> None:
        pass


@dataclass(frozen=True)
class Format:
    suffix: str
    export_fp32: Callable  # (model, path, in_chans, metadata, options) -> details
    export_int8: Callable  # (model, fp32_path, path, in_chans, calibration, options, on_batch) -> details
    int8_from_file: bool  # int8 quantizes a float file of the same format (ONNX) rather than the model (TFLite)


FORMATS = {
    "onnx": Format(
        ".onnx",
        lambda model, path, in_chans, meta, opts: onnx_format.export_fp32(model, path, in_chans, meta),
        lambda model, fp32, path, in_chans, calib, opts, tick: onnx_format.quantize_int8(
            fp32, path, calib, method=opts.calib_method, scheme=opts.onnx_scheme, on_batch=tick),
        int8_from_file=True,
    ),
    "tflite": Format(
        ".tflite",
        lambda model, path, in_chans, meta, opts: tflite_format.export_fp32(model, path, in_chans,
                                                                             opts.tflite_layout),
        lambda model, fp32, path, in_chans, calib, opts, tick: tflite_format.export_int8(
            model, path, in_chans, calib, on_batch=tick, layout=opts.tflite_layout),
        int8_from_file=False,
    ),
}


def gzip_size(path: Path) -> int:
    """Bytes of the file gzip-compressed (level 6, as a download or an OTA update would be)."""
    import gzip

    return len(gzip.compress(Path(path).read_bytes(), compresslevel=6))


def parse_formats(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise EdgecnnError(f"unknown format {', '.join(unknown) or repr(text)}; use a comma list of {', '.join(FORMATS)}")
    return names


def calibration_images(data: Dataset, count: int, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """`count` training images (never validation or test), drawn without replacement by a fixed seed, normalized."""
    from .runner import preprocess

    train = data.train
    if count < 1:
        raise EdgecnnError("--calib-samples must be at least 1")
    count = min(count, len(train))
    index = np.sort(np.random.default_rng(seed).choice(len(train), size=count, replace=False))
    return preprocess(train.images[index].numpy(), data.mean, data.std)


def torch_logits(model: torch.nn.Module, images: torch.Tensor, mean, std, tick=None, batch_size: int = 500) -> np.ndarray:
    from .runner import preprocess

    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(preprocess(images[start:start + batch_size].numpy(), mean, std))
            outputs.append(model(x).numpy())
            if tick:
                tick(len(x))
    return np.concatenate(outputs)


def score(logits: np.ndarray, labels: np.ndarray, reference: np.ndarray | None) -> dict:
    top1 = logits.argmax(1)
    top2 = np.sort(logits, axis=1)[:, -2:]
    result = {"accuracy": float((top1 == labels).mean()), "top1_ties": int((top2[:, 0] == top2[:, 1]).sum())}
    if reference is not None:
        error = np.abs(logits - reference)
        result.update(agreement=float((top1 == reference.argmax(1)).mean()), logit_mae=float(error.mean()),
                      logit_max_err=float(error.max()))
    return result


def _same_module(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Same layers and same tensors (e.g. "auto" and "depthwise" on a model whose ghost modules all shuffle)."""
    first, second = a.state_dict(), b.state_dict()
    return str(a) == str(b) and first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@contextlib.contextmanager
def _int8_input(spec: Format, fp32_path: Path, fp32_ok: bool, same_graph: bool, source: torch.nn.Module,
                in_chans: int, metadata: dict, options: ExportOptions) -> Iterator[Path]:
    """The float file an int8 conversion starts from, for formats that quantize a file (ONNX): the fp32 file
    itself when both precisions convert the same graph, else a temporary fp32 file of the int8 graph."""
    if not spec.int8_from_file or same_graph:
        if spec.int8_from_file and not fp32_ok:
            raise EdgecnnError(f"needs the fp32 {spec.suffix} file, which failed")
        yield fp32_path
        return
    with tempfile.TemporaryDirectory(prefix="edgecnn-int8-source-") as tmp:
        float_file = Path(tmp) / f"int8-source{spec.suffix}"
        spec.export_fp32(source, float_file, in_chans, metadata, options)
        yield float_file


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, options: ExportOptions = ExportOptions(), *,
                      data_dir: str | None = None, model_name: str | None = None,
                      progress: Progress | None = None) -> dict:
    """Export one checkpoint; returns the report also written to out_dir/export.json."""
    progress = progress or Progress()
    for name in options.formats:
        if name not in FORMATS:
            raise EdgecnnError(f"unknown format {name!r}; use {', '.join(FORMATS)}")
    from .reparam import check_ghost_rewrite, reparameterize

    check_ghost_rewrite(options.ghost_fp32, "ghost_fp32")
    check_ghost_rewrite(options.ghost_int8, "ghost_int8")
    tflite_format.check_layout(options.tflite_layout, "tflite_layout")
    payload = load_checkpoint(checkpoint)
    model = build_from_checkpoint(payload, model=model_name, source=str(checkpoint)).eval()
    described = payload["data"]
    data = load_dataset(described["dataset"], data_dir, in_chans=payload["in_chans"])
    if list(data.classes) != list(described["classes"]):
        raise EdgecnnError(f"{checkpoint} was trained on classes {described['classes'][:3]}..., but the dataset found "
                           f"has {list(data.classes)[:3]}...")
    split = data.split(options.split)
    labels = split.labels.numpy()
    mean, std = described["mean"], described["std"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    with progress.task(f"PyTorch fp32 on {options.split}", len(split)) as tick:
        reference = torch_logits(model, split.images, mean, std, tick)  # the model as trained, not as rewritten
    example = torch.zeros(1, payload["in_chans"], 32, 32)
    sources, rewrites = {}, {}  # the graph each precision's files are converted from
    for precision, ghost in (("fp32", options.ghost_fp32), ("int8", options.ghost_int8))[:2 if options.int8 else 1]:
        sources[precision], rewrites[precision] = reparameterize(model, example, ghost)
    same_graph = not options.int8 or _same_module(sources["fp32"], sources["int8"])
    torch_row = Artifact("pytorch-fp32", "pytorch", "fp32", status="ok", **score(reference, labels, None))
    torch_row.agreement, torch_row.logit_mae, torch_row.logit_max_err = 1.0, 0.0, 0.0

    metadata = {"edgecnn_version": __version__, "model": payload["model"], "dataset": described["dataset"],
                "num_classes": str(payload["num_classes"]), "in_chans": str(payload["in_chans"]),
                "image_size": "32", "mean": json.dumps(mean), "std": json.dumps(std),
                "classes": json.dumps(described["classes"]), "input_layout": "NCHW",
                "preprocessing": "x = (uint8 / 255 - mean) / std per channel, NCHW float32"}
    report = {"format": EXPORT_FORMAT, "edgecnn_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "checkpoint": str(checkpoint), "model": payload["model"], "dataset": described["dataset"],
              "data": described, "split": options.split, "images": len(split), "options": asdict(options),
              "head_activation": None if payload.get("head") == "clean" else _head_activation(payload["model"]),
              "head": payload.get("head", "faithful"), "rewrites": rewrites,
              "artifacts": [asdict(torch_row)]}

    def save() -> None:
        atomic_write_text(out_dir / "export.json", json.dumps(report, indent=2) + "\n")

    calibration = None
    if options.int8:
        calibration = calibration_images(data, options.calib_samples)
        report["calibration"] = {"split": "train", "images": len(calibration), "seed": CALIBRATION_SEED,
                                 "method": options.calib_method}
    save()

    for format_name in options.formats:
        spec = FORMATS[format_name]
        fp32_path = out_dir / f"model.fp32{spec.suffix}"
        precisions = ("fp32", "int8") if options.int8 else ("fp32",)
        fp32_ok = False
        for precision in precisions:
            row = Artifact(f"{format_name}-{precision}", format_name, precision)
            path = out_dir / f"model.{precision}{spec.suffix}"
            path.unlink(missing_ok=True)  # never report a stale file from an earlier export as this one
            started = time.perf_counter()
            source = sources[precision]
            try:
                if precision == "fp32":
                    progress.note(f"exporting {row.name}")
                    row.details = spec.export_fp32(source, path, payload["in_chans"], metadata, options)
                else:
                    with progress.task(f"calibrating {row.name}", len(calibration)) as tick, \
                            _int8_input(spec, fp32_path, fp32_ok, same_graph, source, payload["in_chans"],
                                        metadata, options) as float_file:
                        row.details = spec.export_int8(source, float_file, path, payload["in_chans"], calibration,
                                                       options, tick)
                row.details["ghost_rewrite"] = rewrites[precision]["ghost"]
            except Exception as error:  # noqa: BLE001 - a failed converter is a row, not a crash (see module doc)
                row.status, row.error = "failed", _first_line(error)
                row.details = {"traceback": traceback.format_exc(limit=-3)}
                path.unlink(missing_ok=True)
                report["artifacts"].append(asdict(row))
                save()
                continue
            row.export_seconds = round(time.perf_counter() - started, 2)
            row.file, row.bytes, row.sha256 = path.name, path.stat().st_size, sha256_file(path)
            row.gzip_bytes = gzip_size(path)
            fp32_ok = fp32_ok or precision == "fp32"
            try:
                started = time.perf_counter()
                with progress.task(f"{row.name} on {options.split}", len(split)) as tick:
                    logits = evaluate_file(path, split.images.numpy(), mean, std, options.threads, tick,
                                           row.details.get("layout"))
                row.eval_seconds = round(time.perf_counter() - started, 2)
                for key, value in score(logits, labels, reference).items():
                    setattr(row, key, value)
                row.status = "ok"
            except Exception as error:  # noqa: BLE001 - a file its runtime cannot run is reported, not fatal
                row.status, row.error = "failed", f"exported but does not run: {_first_line(error)}"
            report["artifacts"].append(asdict(row))
            save()
    return report


def find_export(model: str, dataset: str | None = None, root: str | Path = "artifacts",
                files: tuple[str, ...] = ()) -> Path:
    """The newest export folder (by export.json's creation time) of `model` [on `dataset`] under root, holding
    `files` if given."""
    from edgecnn.compress.zoo import resolve

    name = resolve(model)
    found = []
    for path in Path(root).glob("*/export.json"):
        try:
            report = json.loads(path.read_text())
        except ValueError:
            continue
        if report.get("model") == name and (dataset is None or report.get("dataset") == dataset) \
                and all((path.parent / f).is_file() for f in files):
            found.append((report.get("created", ""), path.parent))
    if not found:
        raise EdgecnnError(f"no export of {name} in {root}/; run 'edgecnn export --model {name} --int8' first")
    return max(found)[1]


def evaluate_file(path: str | Path, images: np.ndarray, mean, std, threads: int | None = None, tick=None,
                  layout: str | None = None) -> np.ndarray:
    """Logits of an exported file over uint8 NCHW images, through the device runner (so, through its runtime);
    `layout` is the file's input layout as export recorded it (None: read off the file)."""
    model = open_model(str(path), threads=threads, layout=layout)
    chunks = []
    for _, batch in predict_batches(model, images, mean, std, batch_size=250):
        chunks.append(batch)
        if tick:
            tick(len(batch))
    return np.concatenate(chunks)


def _head_activation(model: str) -> str | None:
    from edgecnn.compress.zoo import get_entry

    head = getattr(get_entry(model).spec, "head", None)
    return getattr(head, "logit_act", None)
