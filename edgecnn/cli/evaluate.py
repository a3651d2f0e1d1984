"""`edgecnn eval`: accuracy of a run or checkpoint on a split, over every image of it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .console import err, out
from .options import CheckpointOpt, DataDirOpt, JsonOpt, RunOpt, RunsDirOpt


def evaluate(
    checkpoint: CheckpointOpt = None,
    run: RunOpt = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="The newest finished run of this model (on --dataset if given).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset of the run.")] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    which: Annotated[str, typer.Option(help="best or last checkpoint of a run.")] = "best",
    data_dir: DataDirOpt = None,
    runs_dir: RunsDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a trained model: --checkpoint PATH, --run DIR, or --model M --dataset D (newest finished run)."""
    from edgecnn.compress.train import evaluate as evaluate_split
    from edgecnn.data import data_mismatch, load_recorded, same_data
    from edgecnn.compress.rebuild import build_from_checkpoint, resolve_checkpoint
    from edgecnn.runs import load_checkpoint

    path = resolve_checkpoint(checkpoint=checkpoint, run=run, model=model, dataset=dataset, root=runs_dir, which=which)
    payload = load_checkpoint(path)
    net = build_from_checkpoint(payload, model=model, source=str(path))
    described = payload["data"]
    data = load_recorded(described, data_dir, what=str(path), strict=False)
    if not same_data(described, data):  # evaluating on other data may be the point, but never silently
        err.print(f"note: {data_mismatch(described, data, str(path))}", markup=False, highlight=False)
    loss, correct, count, correct5 = evaluate_split(net, data.split(split), described["mean"], described["std"])
    report = {"checkpoint": str(path), "model": payload["model"], "dataset": described["dataset"], "split": split,
              "accuracy": correct / count, "top5": correct5 / count, "loss": loss / count, "images": count}
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        out.print(f"{payload['model']} on {described['dataset']} {split}: accuracy {correct / count:.2%} "
                  f"({correct}/{count}), top-5 {correct5 / count:.2%}, loss {loss / count:.4f}  [{path}]", markup=False, highlight=False)
