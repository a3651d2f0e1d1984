"""A compressed model is a run like any other, with its lineage: the parent checkpoint, the method and its
settings. ``--model/--dataset`` lookups keep finding the newest *trained* run; a derived run is named with --run."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

import edgecnn
from edgecnn.compress.train.loop import evaluate
from edgecnn.compress.zoo import count_mflops, count_params
from edgecnn.data import Dataset, Split, load_recorded
from edgecnn.errors import EdgecnnError
from edgecnn.io import atomic_write_text
from edgecnn.compress.rebuild import build_from_checkpoint, removed_blocks, structure_of
from edgecnn.runs import check_run_name, load_checkpoint, runs_root, save_checkpoint


@dataclass
class Parent:
    checkpoint: Path
    payload: dict
    model: nn.Module
    data: Dataset

    @property
    def run_dir(self) -> Path | None:
        folder = self.checkpoint.parent
        return folder if (folder / "config.json").is_file() else None

    def test_acc(self) -> float | None:
        result = self.run_dir / "result.json" if self.run_dir else None
        return json.loads(result.read_text()).get("test_acc") if result and result.is_file() else None


def load_parent(checkpoint: str | Path, data_dir: str | None = None) -> Parent:
    """The model to compress (structure and weights) and the dataset it was trained on."""
    checkpoint = Path(checkpoint)
    payload = load_checkpoint(checkpoint)
    model = build_from_checkpoint(payload, source=str(checkpoint)).eval()
    data = load_recorded(payload["data"], data_dir, what=str(checkpoint))
    return Parent(checkpoint, payload, model, data)


def step_row(model: nn.Module, parent: Parent, step: int, records: list[dict]) -> dict:
    """One row of a pruning table: size, FLOPs and test accuracy after `step`, with that step's fine-tune records."""
    data = parent.data
    _, correct, count, _ = evaluate(model, data.test, data.mean, data.std)
    return {"step": step, "params": count_params(model), "mflops": count_mflops(model, parent.payload["in_chans"]),
            "test_acc": correct / count, "val_acc": max((r["val_acc"] for r in records), default=None),
            "epochs": len(records), "seconds": sum(r["seconds"] for r in records)}


def val_subset_score(data: Dataset, images: int) -> Callable[[nn.Module], float]:
    """Accuracy on the first `images` validation images: the score of the sensitivity scans."""
    subset = Split(data.val.images[:images], data.val.labels[:images])

    def score(net: nn.Module) -> float:
        _, correct, count, _ = evaluate(net, subset, data.mean, data.std)
        return correct / count

    return score


class DerivedRun:
    """The run directory a compression method writes: config.json with lineage, checkpoints, metrics, result."""

    def __init__(self, parent: Parent, method: str, settings: dict, runs_dir: str | None = None,
                 name: str | None = None, student: tuple[str, nn.Module] | None = None):
        """student: (zoo name, module) when the new run is another model (distillation), else the parent's."""
        self.parent, self.method = parent, method
        self.model_name, net = student or (parent.payload["model"], parent.model)
        self.same_model = student is None  # a derived run of the parent's model keeps its head (e.g. "clean")
        model, dataset = self.model_name, parent.payload["data"]["dataset"]
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.path = runs_root(runs_dir) / (check_run_name(name) if name else f"{model}-{dataset}-{method}-{stamp}")
        if self.path.exists():
            raise EdgecnnError(f"run directory {self.path} already exists; choose another --name")
        self.lineage = {"parent": str(parent.run_dir or parent.checkpoint), "parent_checkpoint": str(parent.checkpoint),
                        "parent_test_acc": parent.test_acc(), "method": method, "settings": settings}
        config = {"model": model, "dataset": dataset, "recipe": method,
                  "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": "cpu",
                  "params": count_params(net), "mflops": count_mflops(net, parent.payload["in_chans"]),
                  "edgecnn": edgecnn.__version__, "torch": torch.__version__, "data": parent.payload["data"],
                  "lineage": self.lineage}
        atomic_write_text(self.path / "config.json", json.dumps(config, indent=2))

    def save(self, model: nn.Module, filename: str = "best.pt", **extra) -> Path:
        """A checkpoint export and bench load like a trained one; `structure` rebuilds pruned layer shapes and
        `removed_blocks` the blocks depth pruning took out."""
        keys = ("num_classes", "in_chans", "data", "head") if self.same_model else ("num_classes", "in_chans", "data")
        meta = {k: self.parent.payload[k] for k in keys if k in self.parent.payload} | {"model": self.model_name}
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        shape = {"structure": structure_of(model), "removed_blocks": removed_blocks(model)}
        return save_checkpoint(self.path / filename, {**meta, "edgecnn": edgecnn.__version__, "state_dict": state,
                                                      **shape, "lineage": self.lineage, **extra})

    def write_json(self, filename: str, value) -> None:
        atomic_write_text(self.path / filename, json.dumps(value, indent=2))

    def write_metrics(self, records: list[dict]) -> None:
        atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))

    def log_steps(self, table: str, rows: list[dict], records: list[dict]) -> None:
        """After each pruning step: the step table so far (`table`, e.g. structured.json, which the report draws)
        and every fine-tune epoch so far (metrics.jsonl), both rewritten whole, so a killed run keeps its steps."""
        self.write_metrics(records)
        self.write_json(table, rows)

    def finish(self, model: nn.Module, **extra) -> dict:
        """Test accuracy over every test image; result.json marks the run finished."""
        data = self.parent.data
        loss, correct, count, correct5 = evaluate(model, data.test, data.mean, data.std)
        result = {"status": "finished", "test_acc": correct / count, "test_top5": correct5 / count,
                  "test_loss": loss / count,
                  "params": count_params(model), "mflops": count_mflops(model, self.parent.payload["in_chans"]),
                  "test_images": count, "method": self.method, "parent_test_acc": self.lineage["parent_test_acc"],
                  **extra}
        atomic_write_text(self.path / "result.json", json.dumps(result, indent=2))
        return result
