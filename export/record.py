"""`export.json`, the file between the export stage and everything after it: its one reader and writer.

An export folder holds the model files and `export.json`: the checkpoint they came from, the dataset record, the
options, and one row per file (or per failed conversion) with its size, sha256 and accuracy measured through its
own runtime. Every other module reads it through :class:`ExportRecord`, which checks its shape once, so a damaged
or foreign file is one clear line instead of a KeyError somewhere downstream.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edgecnn.errors import EdgecnnError
from edgecnn.io import atomic_write_text

EXPORT_FORMAT = "edgecnn-export/1"
FILENAME = "export.json"


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
    top5: float | None = None  # the label among the five highest logits
    agreement: float | None = None  # top-1 agreement with the PyTorch fp32 model
    logit_mae: float | None = None  # mean |logit - PyTorch logit|
    logit_max_err: float | None = None
    top1_ties: int | None = None  # images whose two highest logits are equal (the ReLU6-on-logits quirk)
    eval_seconds: float | None = None
    form: str = "op-minimal"  # the graph form (export/reparam.py FORMS) the file was converted from
    mmacs: float | None = None  # multiply-adds of that graph, in millions (conv and linear layers)
    ops: int | None = None  # operators in the file itself
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_dict(cls, raw: dict) -> Artifact:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def _plain_name(file) -> bool:
    """A row's file is None (a failed conversion) or a file name inside the export folder, never a path."""
    return file is None or (isinstance(file, str) and file not in ("", ".", "..") and Path(file).name == file)


@dataclass
class ExportRecord:
    """The contents of one export folder's export.json."""

    folder: Path
    checkpoint: str
    model: str
    dataset: str
    data: dict  # the dataset record of the checkpoint (edgecnn.data.Dataset.describe)
    split: str
    images: int
    options: dict
    artifacts: list[Artifact]
    created: str = ""
    edgecnn_version: str = ""
    head: str = "faithful"
    head_activation: str | None = None
    rewrites: dict = field(default_factory=dict)
    calibration: dict | None = None
    forms_alike: dict = field(default_factory=dict)  # row not written -> the row of the same graph that was
    complete: bool = False  # every file of the options was exported (or failed): set last

    @property
    def path(self) -> Path:
        return self.folder / FILENAME

    # ------------------------------------------------------------------------------------------------ reading

    @classmethod
    def exists(cls, folder: str | Path) -> bool:
        return (Path(folder) / FILENAME).is_file()

    @classmethod
    def read(cls, folder: str | Path) -> ExportRecord:
        """The record of an export folder; a missing, damaged or foreign export.json is one EdgecnnError."""
        folder = Path(folder)
        path = folder / FILENAME
        if not path.is_file():
            raise EdgecnnError(f"{folder} holds no {FILENAME}; run 'edgecnn export' first")
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise EdgecnnError(f"{path} is not readable JSON ({error}); export again") from error
        if not isinstance(raw, dict) or raw.get("format") != EXPORT_FORMAT:
            raise EdgecnnError(f"{path} is not an edgecnn export record (no '{EXPORT_FORMAT}' format tag)")
        kinds = {"checkpoint": str, "model": str, "dataset": str, "data": dict, "split": str, "images": int,
                 "options": dict, "artifacts": list}
        wrong = next((k for k, kind in kinds.items() if not isinstance(raw.get(k), kind)), None)
        if wrong is None:
            rows = raw["artifacts"]
            wrong = next(("artifacts" for a in rows if not isinstance(a, dict) or not all(
                isinstance(a.get(k), str) for k in ("name", "format", "precision", "status"))
                or not _plain_name(a.get("file"))), None)
        if wrong:
            raise EdgecnnError(f"{path} is damaged ({wrong!r} is missing or malformed); export again")
        values = {f.name: raw[f.name] for f in fields(cls) if f.name in raw and f.name not in ("folder", "artifacts")}
        return cls(folder=folder, artifacts=[Artifact.from_dict(a) for a in raw["artifacts"]], **values)

    @classmethod
    def find(cls, model: str, dataset: str | None = None, root: str | Path = "artifacts") -> ExportRecord:
        """The newest export (by creation time) of zoo `model` [on `dataset`] under root."""
        from edgecnn.compress.zoo import resolve

        name = resolve(model)
        found = []
        for path in Path(root).glob(f"*/{FILENAME}"):
            try:
                record = cls.read(path.parent)
            except EdgecnnError:
                continue  # one damaged folder does not hide the others
            if record.model == name and (dataset is None or record.dataset == dataset):
                found.append((record.created, str(record.folder), record))
        if not found:
            raise EdgecnnError(f"no export of {name} in {root}/; run 'edgecnn export --model {name} --int8' first")
        return max(found, key=lambda item: item[:2])[2]

    def files(self) -> list[Artifact]:
        """The rows whose file was exported and passed its check."""
        return [a for a in self.artifacts if a.file and a.ok]

    def by_file(self, file: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.file == file), None)

    @property
    def reference(self) -> Artifact | None:
        """The PyTorch fp32 row every file is compared with."""
        return next((a for a in self.artifacts if a.format == "pytorch"), None)

    def int8_drop_pp(self) -> float | None:
        """The worst int8 file's accuracy loss against PyTorch fp32, in points (None: no measured int8 file)."""
        reference = self.reference
        drops = [100 * (reference.accuracy - a.accuracy) for a in self.artifacts
                 if reference and reference.accuracy is not None and a.precision == "int8" and a.ok
                 and a.accuracy is not None]
        return max(drops) if drops else None

    # ------------------------------------------------------------------------------------------------ writing

    def to_dict(self) -> dict:
        raw = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("folder", "artifacts")}
        return {"format": EXPORT_FORMAT, **raw, "artifacts": [asdict(a) for a in self.artifacts]}

    def save(self) -> None:
        """Write export.json atomically (after every file, so an interrupted export keeps what it finished)."""
        atomic_write_text(self.path, json.dumps(self.to_dict(), indent=2) + "\n")
