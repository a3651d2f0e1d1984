"""`edgecnn bundle`: an export folder -> a self-contained deployment bundle (folder + .tar.gz)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .console import out
from .options import DataDirOpt


def bundle(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Bundle the newest export of this model.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset of that export.")] = None,
    export_dir: Annotated[str | None, typer.Option("--export", help="An export folder (holds export.json).")] = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="Bundle folder (default <export>/bundle).")] = None,
    sample: Annotated[int, typer.Option(min=1, help="Test images shipped for on-device accuracy.")] = 1000,
    archive: Annotated[bool, typer.Option("--archive/--no-archive", help="Also write <bundle>.tar.gz.")] = True,
    exports_root: Annotated[str, typer.Option("--exports-root", help="Where exports are searched.")] = "artifacts",
    data_dir: DataDirOpt = None,
) -> None:
    """Build a deployment bundle: model files, manifest with sha256, labels, sample, requirements and runner.py."""
    from edgecnn.errors import EdgecnnError
    from edgecnn.export.bundle import make_bundle
    from edgecnn.export.pipeline import find_export

    if export_dir is None:
        if model is None:
            raise EdgecnnError("say which export: --export DIR, or --model NAME [--dataset D]")
        export_dir = str(find_export(model, dataset, exports_root))
    folder = make_bundle(export_dir, out_dir or Path(export_dir) / "bundle", sample=sample, data_dir=data_dir,
                         archive=archive)
    manifest = json.loads((folder / "manifest.json").read_text())
    out.print(f"bundle {folder} ({len(manifest['artifacts'])} model files, {manifest['sample']['count']} sample "
              f"images){' and ' + str(folder) + '.tar.gz' if archive else ''}", markup=False, highlight=False)
    out.print("on the device: python runner.py eval | predict IMAGE | bench --threads N", markup=False,
              highlight=False)
