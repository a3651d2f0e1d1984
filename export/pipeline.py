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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from edgecnn import __version__
from edgecnn.data import Dataset, load_recorded
from edgecnn.errors import EdgecnnError, describe_error
from edgecnn.io import folder_lock, remove_stale_temporaries, sha256_file
from edgecnn.progress import Progress
from edgecnn.compress.rebuild import build_from_checkpoint
from edgecnn.runs import load_checkpoint

from . import onnx as onnx_format
from . import executorch_format
from . import ncnn_format
from . import tflite as tflite_format
from .options import ExportOptions
from .record import Artifact, ExportRecord
from .runner import open_model, predict_batches

CALIBRATION_SEED = 0


@dataclass(frozen=True)
class Format:
    suffix: str
    export_fp32: Callable  # (model, path, in_chans, metadata, options) -> details
    export_int8: Callable  # (model, fp32_path, path, in_chans, calibration, options, on_batch) -> details
    int8_from_file: bool  # int8 quantizes a float file of the same format (ONNX) rather than the model (TFLite)
    export_fp16: Callable  # (model, fp32_path, path, in_chans, options) -> details
    fp16_from_file: bool  # fp16 converts the fp32 file (ONNX, TFLite, ncnn) rather than the model (ExecuTorch)
    prepare: Callable  # (model, form) -> the module this format converts for that graph form
    count_ops: Callable  # (path) -> operators in the file


def _onnx_nodes(path: Path) -> int:
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


def _channel_last_unless_naive(model: torch.nn.Module, form: str) -> torch.nn.Module:
    from .reparam import channel_last

    return model if form == "naive" else channel_last(model)[0]


FORMATS = {
    "onnx": Format(
        ".onnx",
        lambda model, path, in_chans, meta, opts: onnx_format.export_fp32(model, path, in_chans, meta),
        lambda model, fp32, path, in_chans, calib, opts, tick: onnx_format.quantize_int8(
            fp32, path, calib, method=opts.calib_method, scheme=opts.onnx_scheme, on_batch=tick),
        int8_from_file=True, export_fp16=lambda model, fp32, path, in_chans, opts: onnx_format.convert_fp16(fp32, path),
        fp16_from_file=True, prepare=lambda model, form: model, count_ops=_onnx_nodes,
    ),
    "tflite": Format(
        ".tflite",
        lambda model, path, in_chans, meta, opts: tflite_format.export_fp32(model, path, in_chans,
                                                                             opts.tflite_layout),
        lambda model, fp32, path, in_chans, calib, opts, tick: tflite_format.export_int8(
            model, path, in_chans, calib, on_batch=tick, layout=opts.tflite_layout),
        int8_from_file=False,
        export_fp16=lambda model, fp32, path, in_chans, opts: tflite_format.convert_fp16(fp32, path, opts.tflite_layout),
        fp16_from_file=True, prepare=_channel_last_unless_naive,
        count_ops=lambda path: sum(tflite_format.count_ops(path).values()),
    ),
    "ncnn": Format(
        ".ncnn",
        lambda model, path, in_chans, meta, opts: ncnn_format.export_fp32(model, path, in_chans),
        lambda model, fp32, path, in_chans, calib, opts, tick: ncnn_format.export_int8(
            fp32, path, calib, on_batch=tick, fallback=opts.ncnn_fallback),
        int8_from_file=True, export_fp16=lambda model, fp32, path, in_chans, opts: ncnn_format.convert_fp16(fp32, path),
        fp16_from_file=True, prepare=lambda model, form: model, count_ops=ncnn_format.count_ops,
    ),
    "executorch": Format(
        ".pte",
        lambda model, path, in_chans, meta, opts: executorch_format.export_fp32(model, path, in_chans),
        lambda model, fp32, path, in_chans, calib, opts, tick: executorch_format.export_int8(
            model, path, in_chans, calib, on_batch=tick),
        int8_from_file=False, prepare=lambda model, form: model, count_ops=executorch_format.count_ops,
        export_fp16=lambda model, fp32, path, in_chans, opts: executorch_format.export_fp16(model, path, in_chans),
        fp16_from_file=False,
    ),
}
#: how a form's files are told apart: model.int8.tflite (op-minimal, the default), model.int8.macs.tflite, ...
FORM_TAGS = {"op-minimal": "", "mac-preserving": "macs", "layout-free": "nolayout", "naive": "naive"}


def file_name(form: str, precision: str, suffix: str) -> str:
    tag = FORM_TAGS[form]
    return f"model.{precision}{'.' + tag if tag else ''}{suffix}"


def row_name(format_name: str, precision: str, form: str) -> str:
    tag = FORM_TAGS[form]
    return f"{format_name}-{precision}{'-' + tag if tag else ''}"


def gzip_size(path: Path) -> int:
    """Bytes of the file gzip-compressed (level 6, as a download or an OTA update would be)."""
    import gzip

    return len(gzip.compress(Path(path).read_bytes(), compresslevel=6))


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
    from .runner import top_k

    ranked = top_k(logits)
    top1 = ranked[:, 0]
    top2 = np.sort(logits, axis=1)[:, -2:]
    result = {"accuracy": float((top1 == labels).mean()), "top5": float((ranked == labels[:, None]).any(1).mean()),
              "top1_ties": int((top2[:, 0] == top2[:, 1]).sum())}
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


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, options: ExportOptions = ExportOptions(), *,
                      data_dir: str | None = None, model_name: str | None = None,
                      progress: Progress | None = None) -> dict:
    """Export one checkpoint; returns the report also written to out_dir/export.json. The folder is locked for
    the whole export: a second process exporting into it is refused."""
    progress = progress or Progress()
    options = options.checked()
    payload, model, data = _load_source(checkpoint, options, data_dir, model_name)  # refusals write nothing
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise EdgecnnError(f"{out_dir} is a file, not a folder for the export")
    with folder_lock(out_dir, "export folder"):
        remove_stale_temporaries(out_dir)
        return _export_checkpoint(checkpoint, Path(out_dir), options, payload, model, data, progress)


def _load_source(checkpoint: str | Path, options: ExportOptions, data_dir: str | None, model_name: str | None):
    """(checkpoint payload, model, dataset) for checked options."""
    payload = load_checkpoint(checkpoint)
    model = build_from_checkpoint(payload, model=model_name, source=str(checkpoint)).eval()
    described = payload["data"]
    data = load_recorded(described, data_dir, what=str(checkpoint))
    if list(data.classes) != list(described["classes"]):
        raise EdgecnnError(f"{checkpoint} was trained on classes {described['classes'][:3]}..., but the dataset found "
                           f"has {list(data.classes)[:3]}...")
    return payload, model, data


def _export_checkpoint(checkpoint: str | Path, out_dir: Path, options: ExportOptions, payload: dict,
                       model: torch.nn.Module, data: Dataset, progress: Progress) -> dict:
    from edgecnn.compress.zoo.measure import count_mmacs

    from edgecnn.compress.zoo import is_zoo

    from .reparam import form_rewrite, generic_rewrite, reparameterize

    described = payload["data"]
    split = data.split(options.split)
    labels = split.labels.numpy()
    mean, std = described["mean"], described["std"]

    with progress.task(f"PyTorch fp32 on {options.split}", len(split)) as tick:
        reference = torch_logits(model, split.images, mean, std, tick)  # the model as trained, not as rewritten
    precisions = ("fp32",) + ("int8",) * options.int8 + ("fp16",) * options.fp16
    # an fp16 file is the fp32 graph stored and run at half width, so it takes the fp32 rewrite
    op_minimal = {"fp32": options.ghost_fp32, "int8": options.ghost_int8, "fp16": options.ghost_fp32}
    sources, rewrites = {}, {}  # (form, precision) -> the graph that form's files of that precision convert
    generic = None if is_zoo(payload["model"]) else generic_rewrite(model, payload["model"].startswith("timm:"))
    for form in options.forms:
        for precision in precisions:
            ghost = form_rewrite(form, "fp32" if precision == "fp16" else precision, op_minimal)
            sources[form, precision], rewrites[f"{form}/{precision}"] = generic or reparameterize(model, None, ghost)
    torch_row = Artifact("pytorch-fp32", "pytorch", "fp32", status="ok", form="naive",
                         mmacs=round(count_mmacs(model, payload["in_chans"]), 4), **score(reference, labels, None))
    torch_row.agreement, torch_row.logit_mae, torch_row.logit_max_err = 1.0, 0.0, 0.0

    metadata = {"edgecnn_version": __version__, "model": payload["model"], "dataset": described["dataset"],
                "num_classes": str(payload["num_classes"]), "in_chans": str(payload["in_chans"]),
                "image_size": "32", "mean": json.dumps(mean), "std": json.dumps(std),
                "classes": json.dumps(described["classes"]), "input_layout": "NCHW",
                "preprocessing": "x = (uint8 / 255 - mean) / std per channel, NCHW float32"}
    record = ExportRecord(folder=out_dir, checkpoint=str(checkpoint), model=payload["model"],
                          dataset=described["dataset"], data=described, split=options.split, images=len(split),
                          options=asdict(options), artifacts=[torch_row], created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                          edgecnn_version=__version__, head=payload.get("head", "faithful"),
                          head_activation=None if payload.get("head") == "clean" else _head_activation(payload["model"]),
                          rewrites=rewrites)
    calibration = None
    if options.int8:
        calibration = calibration_images(data, options.calib_samples)
        record.calibration = {"split": "train", "images": len(calibration), "seed": CALIBRATION_SEED,
                              "method": options.calib_method}
    record.save()

    for format_name in options.formats:
        spec = FORMATS[format_name]
        converted: list[tuple[torch.nn.Module, str, Artifact]] = []  # (module, precision, row): one file per graph
        for form in options.forms:
            fp32_path, fp32_ok = out_dir / file_name(form, "fp32", spec.suffix), False
            prepared = {p: spec.prepare(sources[form, p], form) for p in precisions}
            same_graph = not options.int8 or _same_module(prepared["fp32"], prepared["int8"])
            for precision in precisions:
                row = Artifact(row_name(format_name, precision, form), format_name, precision, form=form)
                path = out_dir / file_name(form, precision, spec.suffix)
                path.unlink(missing_ok=True)  # never report a stale file from an earlier export as this one
                source = prepared[precision]
                twin = next((done for module, p, done in converted if p == precision and _same_module(module, source)),
                            None)
                if twin:  # this form is the same graph as one exported already (a model without ghost modules)
                    record.forms_alike[row.name] = twin.name
                    if precision == "fp32":  # an int8 file of this form quantizes that twin's float file
                        fp32_path, fp32_ok = out_dir / (twin.file or fp32_path.name), twin.ok
                    continue
                converted.append((source, precision, row))
                started = time.perf_counter()
                try:
                    if precision == "fp32":
                        progress.note(f"exporting {row.name}")
                        row.details = spec.export_fp32(source, path, payload["in_chans"], metadata, options)
                    elif precision == "fp16":
                        progress.note(f"exporting {row.name}")
                        if spec.fp16_from_file and not fp32_ok:
                            raise EdgecnnError(f"needs the fp32 {spec.suffix} file, which failed")
                        row.details = spec.export_fp16(source, fp32_path, path, payload["in_chans"], options)
                    else:
                        with progress.task(f"calibrating {row.name}", len(calibration)) as tick, \
                                _int8_input(spec, fp32_path, fp32_ok, same_graph, source, payload["in_chans"],
                                            metadata, options) as float_file:
                            row.details = spec.export_int8(source, float_file, path, payload["in_chans"],
                                                           calibration, options, tick)
                    row.details["ghost_rewrite"] = rewrites[f"{form}/{precision}"]["ghost"]
                except Exception as error:  # noqa: BLE001 - a failed converter is a row, not a crash (module doc)
                    row.status, row.error = "failed", describe_error(error, 300)
                    row.details = {"traceback": traceback.format_exc(limit=-3)}
                    path.unlink(missing_ok=True)
                    record.artifacts.append(row)
                    record.save()
                    continue
                row.export_seconds = round(time.perf_counter() - started, 2)
                row.file, row.bytes, row.sha256 = path.name, path.stat().st_size, sha256_file(path)
                row.gzip_bytes = gzip_size(path)
                row.mmacs = round(count_mmacs(source, payload["in_chans"]), 4)
                row.ops = spec.count_ops(path)
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
                    row.status, row.error = "failed", f"exported but does not run: {describe_error(error, 300)}"
                record.artifacts.append(row)
                record.save()
    record.complete = True
    record.save()
    return record.to_dict()


def find_export(model: str, dataset: str | None = None, root: str | Path = "artifacts") -> Path:
    """The newest export folder (by export.json's creation time) of `model` [on `dataset`] under root."""
    return ExportRecord.find(model, dataset, root).folder


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
