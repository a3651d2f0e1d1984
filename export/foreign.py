"""Model files made outside edgecnn (an ONNX or TFLite classifier from any tool) as an export folder of their own, so
that `edgecnn bundle` and `edgecnn bench` take them like any export: `export.json` with one row per file, each
file's accuracy measured through its own runtime when a labelled dataset is given.

What the file says is read from the file, through the same runner that later runs it: the input shape, its
layout (NCHW, or channel-last), dtype and quantization; the class count from the output. What a file cannot say,
how its pixels are normalized, comes from options (`mean`, `std`) or from the dataset's own statistics; without
either, x = uint8 / 255 (mean 0, std 1), and the record says so. A file whose input is not an image batch
(N, C, H, W or N, H, W, C with 1 or 3 channels) or whose output is not one row of logits per image is refused
in one line. ExecuTorch files (.pte) are taken like the others, their precision read from the XNNPACK graph
inside. ncnn's model is a `.param`/`.bin` pair whose `.param` records no input shape; it is not taken (export
one with `edgecnn export --formats ncnn`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from edgecnn import __version__
from edgecnn.errors import EdgecnnError, describe_error
from edgecnn.io import folder_lock, sha256_file
from edgecnn.progress import Progress

from .pipeline import evaluate_file, gzip_size, score
from .record import Artifact, ExportRecord
from .runner import RunnerError, open_model

SUFFIXES = {".onnx": "onnx", ".tflite": "tflite", ".pte": "executorch"}
#: a foreign model's record names it by its first file: file:<name>
PREFIX = "file:"


def describe_file(path: Path, layout: str | None = None) -> dict:
    """format, precision, layout, input (C, H, W), classes and the runtime's view of the tensors of one file."""
    if path.suffix not in SUFFIXES:
        raise EdgecnnError(f"{path}: edgecnn takes .onnx, .tflite and .pte model files made elsewhere (not "
                           f"{path.suffix or 'a file without a suffix'}); ncnn files only from 'edgecnn export'")
    if not path.is_file():
        raise EdgecnnError(f"model file not found: {path}")
    try:
        model = open_model(str(path), threads=1, layout=layout)
        io = model.io_details()
        shape = io["input"]["shape"]
        if len(shape) != 4:
            raise EdgecnnError(f"{path} takes a {len(shape)}-D input {shape}, not an image batch (N, C, H, W)")
        channels, height, width = model.input_shape()[1:]
        if channels not in (1, 3) or not height or not width:
            raise EdgecnnError(f"{path} takes input {shape}, not an image batch of 1 or 3 channels "
                               "(N, C, H, W, or N, H, W, C with --layout NHWC)")
        out = model.predict(np.zeros((1, channels, height, width), np.float32))
    except RunnerError as error:
        raise EdgecnnError(str(error)) from None
    if out.ndim != 2 or out.shape[0] != 1 or out.shape[1] < 2:
        raise EdgecnnError(f"{path} gives {list(out.shape)} for one image; a classifier gives one row of logits")
    return {"format": SUFFIXES[path.suffix], "precision": _precision(path, io), "layout": model.layout,
            "input": [int(channels), int(height), int(width)], "classes": int(out.shape[1]), "runtime": model.runtime,
            "io": io}


def _precision(path: Path, io: dict) -> str:
    """int8 when the file computes in integers: quantized tensors (TFLite, ExecuTorch's XNNPACK graph) or
    quantize/integer operators (ONNX)."""
    if path.suffix == ".pte":
        from . import executorch_format

        try:
            return executorch_format.precision(path)
        except Exception as error:  # noqa: BLE001 - a .pte that loaded but whose delegate cannot be read
            raise EdgecnnError(f"{path}: cannot read its XNNPACK graph: {describe_error(error)}") from None
    if path.suffix == ".onnx":
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        integer = {"QuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
        return "int8" if any(node.op_type in integer for node in graph.node) else "fp32"
    from ai_edge_litert.interpreter import Interpreter

    tensors = Interpreter(model_path=str(path)).get_tensor_details()
    return "int8" if any(np.dtype(t["dtype"]) in (np.int8, np.uint8) for t in tensors) else "fp32"


def import_files(files: list[str | Path], out_dir: str | Path, *, dataset: str | None = None,
                 data_dir: str | None = None, mean: list[float] | None = None, std: list[float] | None = None,
                 layout: str | None = None, threads: int | None = None, progress: Progress | None = None) -> ExportRecord:
    """Copy foreign model files into an export folder and write its export.json (accuracy on the dataset's whole
    test split through each file's runtime when `dataset` is given). Everything is checked before a file is
    written."""
    from edgecnn.data import load_dataset

    progress = progress or Progress()
    paths = [Path(f) for f in files]
    if not paths:
        raise EdgecnnError("name at least one model file")
    if len({p.name for p in paths}) != len(paths):
        raise EdgecnnError("two of the files have the same name; rename one")
    described = [describe_file(p, layout) for p in paths]
    shapes = {tuple(d["input"]) for d in described}
    if len(shapes) != 1 or len({d["classes"] for d in described}) != 1:
        raise EdgecnnError("the files take different inputs or give different class counts; bundle them apart")
    channels, height, width = shapes.pop()
    classes = described[0]["classes"]
    data = None
    if dataset:
        data = load_dataset(dataset, data_dir, in_chans=channels)
        if (height, width) != (32, 32):
            raise EdgecnnError(f"the files take {height}x{width} images; {data.info.name}'s are 32x32")
        if classes != data.info.num_classes:
            raise EdgecnnError(f"the files give {classes} logits; {data.info.name} has {data.info.num_classes} classes")
    for name, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) not in (1, channels):
            raise EdgecnnError(f"{name} needs {'1 value' if channels == 1 else f'1 or {channels} values'} "
                               f"(the files take {channels}-channel images), not {len(values)}")
    if std is not None and any(v <= 0 for v in std):
        raise EdgecnnError("--std values must be positive")

    given = mean is not None or std is not None

    def per_channel(values, default):
        values = list(values) if values is not None else list(default)
        return values * channels if len(values) == 1 else values

    mean = per_channel(mean, data.mean if data else [0.0])
    std = per_channel(std, data.std if data else [1.0])
    record_data = {**(data.describe() if data else {"dataset": "none", "num_classes": classes,
                                                    "classes": [f"class {i}" for i in range(classes)],
                                                    "in_chans": channels, "image_size": height, "sizes": {}}),
                   "mean": mean, "std": std, "image_shape": [channels, height, width], "labelled": data is not None,
                   "normalization": "given" if given else "the dataset's" if data else "none given: x = uint8 / 255"}
    out_dir = Path(out_dir)
    with folder_lock(out_dir, "export folder"):
        test = data.split("test") if data else None
        record = ExportRecord(folder=out_dir, checkpoint="", model=PREFIX + paths[0].stem,
                              dataset=data.info.name if data else "none", data=record_data, split="test",
                              images=len(test) if test else 0, options={"foreign": True, "layout": layout},
                              artifacts=[], created=time.strftime("%Y-%m-%dT%H:%M:%S"), edgecnn_version=__version__,
                              head="foreign")
        names: set[str] = set()
        for path, info in zip(paths, described):
            name = f"{info['format']}-{info['precision']}"
            name = next(f"{name}-{i}" for i in range(2, 99) if f"{name}-{i}" not in names) if name in names else name
            names.add(name)
            target = out_dir / path.name
            shutil.copyfile(path, target)
            row = Artifact(name, info["format"], info["precision"], file=path.name, form="foreign",
                           bytes=target.stat().st_size, sha256=sha256_file(target), gzip_bytes=gzip_size(target),
                           details={"layout": info["layout"], "source": str(path.resolve()), "input": info["input"],
                                    "runtime": info["runtime"],
                                    "io": info["io"]})
            row.status = "ok"
            if test is not None:
                started = time.perf_counter()
                with progress.task(f"{path.name} on test", len(test)) as tick:
                    try:
                        logits = evaluate_file(target, test.images.numpy(), mean, std, threads, tick, info["layout"])
                    except RunnerError as error:
                        raise EdgecnnError(str(error)) from None
                row.eval_seconds = round(time.perf_counter() - started, 2)
                for key, value in score(logits, test.labels.numpy(), None).items():
                    setattr(row, key, value)
            record.artifacts.append(row)
            record.save()
        record.complete = True
        record.save()
    return record



def import_once(files: list[str | Path], root: str | Path, *, dataset: str | None = None, data_dir: str | None = None,
                mean: list[float] | None = None, std: list[float] | None = None, layout: str | None = None,
                progress: Progress | None = None) -> Path:
    """The export folder of these files under `root` (`file-<name>-<hash>`: the files' sha256 and the options),
    made by import_files unless a complete one whose files still match is there."""
    import hashlib
    import json

    paths = [Path(f) for f in files]
    for path in paths:
        if not path.is_file():
            raise EdgecnnError(f"model file not found: {path}")
    key = json.dumps([[p.name, sha256_file(p)] for p in paths] + [dataset, mean, std, layout])
    stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in paths[0].stem)[:60]
    folder = Path(root) / f"file-{stem}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    if ExportRecord.exists(folder):
        try:
            record = ExportRecord.read(folder)
            if record.complete and all((folder / a.file).is_file() and sha256_file(folder / a.file) == a.sha256
                                       for a in record.files()):
                return folder
        except EdgecnnError:
            pass  # damaged: made again below
    import_files(paths, folder, dataset=dataset, data_dir=data_dir, mean=mean, std=std, layout=layout,
                 progress=progress)
    return folder
