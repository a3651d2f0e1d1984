"""Run folders and checkpoints: the files the compress stage writes and every later stage reads.

A run directory holds ``config.json`` (the resolved configuration and the data description: classes, mean/std),
``metrics.jsonl`` (one line per finished epoch), ``last.pt`` (everything needed to resume), ``best.pt`` (weights
of the best validation epoch) and, once finished, ``result.json``. Every file is written atomically. This module
only reads and writes them; rebuilding a model from a checkpoint is the compress stage's (compress/rebuild.py).

Checkpoints are plain dicts of tensors, numbers and strings, so they load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from edgecnn.errors import EdgecnnError, describe_error
from edgecnn.io import atomic_write_bytes

CHECKPOINT_FORMAT = "edgecnn-checkpoint/1"


RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}$")


def check_run_name(name: str) -> str:
    """A run's folder name as the user gave it (--name): one plain folder name, never a path."""
    if not RUN_NAME.match(name):
        raise EdgecnnError(f"run name {name!r} must be one folder name: letters, digits and . _ + = - (no / or "
                           "spaces), at most 200 characters")
    return name


def runs_root(root: str | os.PathLike[str] | None = None) -> Path:
    """--runs-dir, else $EDGECNN_RUNS_DIR, else ./runs."""
    return Path(root or os.environ.get("EDGECNN_RUNS_DIR") or "runs")


def save_checkpoint(path: str | os.PathLike[str], payload: dict) -> Path:
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike[str]) -> dict:
    """Load an edgecnn checkpoint safely (weights_only); a missing, corrupt or foreign file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise EdgecnnError(f"{path} is not a readable checkpoint (corrupt or truncated?): "
                           f"{describe_error(error, 160)}") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise EdgecnnError(f"{path} is not an edgecnn checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    kinds = {"model": str, "num_classes": int, "in_chans": int, "state_dict": dict, "data": dict}
    wrong = next((key for key, kind in kinds.items() if not isinstance(payload.get(key), kind)), None)
    if wrong:
        raise EdgecnnError(f"{path} is a damaged edgecnn checkpoint ({wrong!r} is missing or not a {kinds[wrong].__name__})")
    return payload


@dataclass
class Run:
    path: Path

    @property
    def config(self) -> dict:
        return _read_json(self.path / "config.json")

    @property
    def result(self) -> dict | None:
        file = self.path / "result.json"
        return _read_json(file) if file.is_file() else None

    @property
    def finished(self) -> bool:
        return (self.path / "result.json").is_file()

    def metrics(self) -> list[dict]:
        file = self.path / "metrics.jsonl"
        if not file.is_file():
            return []
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]

    def checkpoint(self, which: str = "best") -> Path:
        return self.path / f"{which}.pt"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise EdgecnnError(f"cannot read {path}: {error}") from error


def list_runs(root: str | os.PathLike[str] | None = None) -> list[Run]:
    """Runs under the root, oldest first (by creation time recorded in config.json)."""
    base = runs_root(root)
    runs = [Run(p.parent) for p in base.glob("*/config.json")] if base.is_dir() else []
    return sorted(runs, key=lambda r: (r.config.get("created", ""), r.path.name))
