"""`edgecnn runs`: the runs under --runs-dir with their best numbers."""

from __future__ import annotations

import json

from rich.table import Table

from .console import out
from .options import JsonOpt, RunsDirOpt


def runs(runs_dir: RunsDirOpt = None, as_json: JsonOpt = False) -> None:
    """List training runs: model, dataset, recipe, progress, best validation and test accuracy."""
    from edgecnn.runs import list_runs, runs_root

    rows = []
    for run in list_runs(runs_dir):
        config, result, metrics = run.config, run.result, run.metrics()
        rows.append({"run": run.path.name, "path": str(run.path), "model": config["model"], "dataset": config["dataset"],
                     "recipe": config["recipe"], "epochs_done": len(metrics),
                     "epochs": config.get("train", {}).get("resolved", {}).get("epochs"),
                     "parent": config.get("lineage", {}).get("parent"), "status": "finished" if result else "partial",
                     "best_val_acc": max((m["val_acc"] for m in metrics), default=None),
                     "test_acc": result["test_acc"] if result else None,
                     "test_top5": result.get("test_top5") if result else None, "params": config.get("params"),
                     "created": config.get("created")})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"runs in {runs_root(runs_dir)}")
    numbers = ("epochs", "best val %", "test %", "test top-5 %")
    for column in ("run", "model", "dataset", "recipe", "epochs", "status", "best val %", "test %", "test top-5 %"):
        table.add_column(column, justify="right" if column in numbers else "left")

    def pct(value):
        return "-" if value is None else f"{100 * value:.2f}"

    for row in rows:
        table.add_row(row["run"], row["model"], row["dataset"], row["recipe"], f"{row['epochs_done']}/{row['epochs']}",
                      row["status"], pct(row["best_val_acc"]), pct(row["test_acc"]), pct(row["test_top5"]))
    out.print(table)
