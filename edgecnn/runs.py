"""Runs: the hand-off between training and every later stage.

A run directory holds ``config.json`` (the resolved configuration and the data description: classes, mean/std),
``metrics.jsonl`` (one line per finished epoch), ``last.pt`` (everything needed to resume), ``best.pt`` (weights
of the best validation epoch) and, once finished, ``result.json``. Every file is written atomically. Later stages
find a model by ``--model/--dataset`` (the newest finished run) or ``--checkpoint PATH``; they read these files,
never the training code's internals.

Checkpoints are plain dicts of tensors, numbers and strings, so they load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from edgecnn.errors import EdgecnnError
from edgecnn.io import atomic_write_bytes

CHECKPOINT_FORMAT = "edgecnn-checkpoint/1"


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
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise EdgecnnError(f"{path} is not a readable checkpoint (corrupt or truncated?): "
                           f"{str(error).splitlines()[0][:120]}") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise EdgecnnError(f"{path} is not an edgecnn checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    return payload


def build_from_checkpoint(payload: dict, *, model: str | None = None, num_classes: int | None = None,
                          in_chans: int | None = None, source: str = "checkpoint") -> torch.nn.Module:
    """Rebuild the zoo model a checkpoint was trained as, refusing a different model or class count."""
    from edgecnn.compress.zoo import get_model, resolve

    if model is not None and resolve(model) != payload["model"]:
        raise EdgecnnError(f"{source} holds {payload['model']}, not {resolve(model)}")
    for name, wanted in (("num_classes", num_classes), ("in_chans", in_chans)):
        if wanted is not None and payload[name] != wanted:
            raise EdgecnnError(f"{source} was trained with {name}={payload[name]}, not {wanted}")
    net = get_model(payload["model"], payload["num_classes"], payload["in_chans"])
    try:
        if payload.get("removed_blocks"):  # depth-pruned (compress/methods/depth.py): take the blocks out first
            from edgecnn.compress.methods.depth import remove_blocks

            remove_blocks(net, payload["removed_blocks"])
        if "structure" in payload:  # structurally pruned: give each layer its saved shape first
            apply_structure(net, payload["structure"], payload["state_dict"])
        net.load_state_dict(payload["state_dict"])
    except (RuntimeError, AttributeError) as error:
        raise EdgecnnError(f"{source} does not fit {payload['model']}: {str(error).splitlines()[0]}") from error
    if payload.get("head") == "clean":  # compress/methods/head.py: the logit activation was dropped and refitted
        from edgecnn.compress.methods.head import strip_logit_activation

        strip_logit_activation(net)
    return net


_SHAPE_ATTRS = {torch.nn.Conv2d: ("in_channels", "out_channels", "groups"), torch.nn.Linear: ("in_features", "out_features"),
                torch.nn.BatchNorm2d: ("num_features",)}


def structure_of(model: torch.nn.Module) -> dict[str, dict[str, int]]:
    """The channel counts of every conv, linear and BatchNorm layer: what a structurally pruned model needs, beside
    its state_dict, to be rebuilt from the zoo definition (plain ints, so checkpoints stay weights_only)."""
    return {name: {attr: int(getattr(module, attr)) for attr in attrs} for name, module in model.named_modules()
            for kind, attrs in _SHAPE_ATTRS.items() if type(module) is kind}


def apply_structure(net: torch.nn.Module, structure: dict, state_dict: dict) -> None:
    """Resize `net`'s layers to a pruned model's channel counts; the tensors get their shapes from `state_dict`."""
    for name, attrs in structure.items():
        module = net.get_submodule(name)
        for attr, value in attrs.items():
            setattr(module, attr, value)
    for key, value in state_dict.items():
        owner, _, leaf = key.rpartition(".")
        module = net.get_submodule(owner)
        if leaf in module._parameters and module._parameters[leaf].shape != value.shape:
            module._parameters[leaf] = torch.nn.Parameter(torch.empty_like(value))
        elif leaf in module._buffers and module._buffers[leaf] is not None and module._buffers[leaf].shape != value.shape:
            module._buffers[leaf] = torch.empty_like(value)


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


def find_run(model: str, dataset: str | None, root: str | os.PathLike[str] | None = None) -> Run:
    """The newest finished run of `model` on `dataset` (any dataset when None); a one-line error saying how to
    train one otherwise."""
    from edgecnn.compress.zoo import resolve
    from edgecnn.data import dataset_info

    name, data = resolve(model), dataset_info(dataset).name if dataset else None
    # compressed runs (with lineage) are never picked implicitly: a user names them with --run
    matches = [r for r in list_runs(root) if r.finished and r.config["model"] == name and "lineage" not in r.config
               and (data is None or r.config["dataset"] == data)]
    if not matches:
        raise EdgecnnError(f"no finished run of {name}{f' on {data}' if data else ''} in {runs_root(root)}; train "
                           f"one with 'edgecnn train --model {name} --dataset {data or 'fashion-mnist'}'")
    return matches[-1]


def resolve_checkpoint(*, checkpoint: str | None = None, run: str | None = None, model: str | None = None,
                       dataset: str | None = None, root: str | None = None, which: str = "best") -> Path:
    """--checkpoint PATH | --run DIR | --model M --dataset D (newest finished run) -> checkpoint path."""
    if checkpoint:
        return Path(checkpoint)
    if run:
        if not (Path(run) / "config.json").is_file():
            raise EdgecnnError(f"{run} is not a run directory (no config.json)")
        return Run(Path(run)).checkpoint(which)
    if model:
        return find_run(model, dataset, root).checkpoint(which)
    raise EdgecnnError("say which model: --checkpoint PATH, --run DIR, or --model NAME --dataset NAME")
