"""`edgecnn report`: the accuracy and deployment tables, plots and a recommendation per device, from what the
other stages left on disk (runs, exports, the results store)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .console import out
from .options import RunsDirOpt

ModelsOpt = Annotated[str | None, typer.Option("--models", help="Comma list of zoo models (default: all).")]
MaxDropOpt = Annotated[float, typer.Option("--max-drop", min=0,
                                           help="Accuracy budget in points for the per-device recommendation.")]
OutOpt = Annotated[str, typer.Option("--out", help="Folder for report.md/.html, CSV, JSON and PNGs.")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="SQLite results file (default results/bench.sqlite).")]


def report(
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Only runs and bundles of this dataset.")] = None,
    models: ModelsOpt = None,
    max_drop: MaxDropOpt = 1.0,
    out_dir: OutOpt = "results/report",
    runs_dir: RunsDirOpt = None,
    exports_root: Annotated[str, typer.Option("--exports-root", help="Where exports are searched.")] = "artifacts",
    store_path: StoreOpt = None,
) -> None:
    """Write the report: Markdown, self-contained HTML, CSV, JSON and plots, with a recommendation per device."""
    from edgecnn.bench.store import ResultStore, default_path
    from edgecnn.compress.zoo import resolve
    from edgecnn.data import dataset_info
    from edgecnn.errors import EdgecnnError
    from edgecnn.report import collect, write_report
    from edgecnn.report.render import recommendation_lines
    from edgecnn.runs import runs_root

    names = [resolve(m.strip()) for m in models.split(",") if m.strip()] if models else None
    data_name = dataset_info(dataset).name if dataset else None
    path = store_path or default_path()
    if store_path and not Path(store_path).is_file():
        raise EdgecnnError(f"results store not found: {store_path}")
    store = ResultStore(path) if Path(path).is_file() else None
    data = collect(runs_dir=runs_root(runs_dir), artifacts_dir=exports_root, store=store, dataset=data_name,
                   models=names, max_drop=max_drop)
    if not data.accuracy and not data.deployment:
        raise EdgecnnError(f"nothing to report: no finished run in {runs_root(runs_dir)} and no measurement in {path}")
    files = write_report(data, out_dir)
    for line in recommendation_lines(data.recommendations):
        out.print(line, markup=False, highlight=False)
    out.print(f"{len(data.accuracy)} runs, {len(data.deployment)} measurements; report in {files['report.html']} "
              f"and {files['report.md']}", markup=False, highlight=False)
