"""`edgecnn bundle`: an export folder -> a self-contained deployment bundle (folder + .tar.gz)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .console import err, out
from .options import DataDirOpt, LayoutOpt, MeanOpt, StdOpt, float_list


def bundle(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Bundle the newest export of this model.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset of that export.")] = None,
    export_dir: Annotated[str | None, typer.Option("--export", help="An export folder (holds export.json).")] = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="Bundle folder (default <export>/bundle).")] = None,
    sample: Annotated[int, typer.Option(min=1, help="Test images shipped for on-device accuracy.")] = 1000,
    archive: Annotated[bool, typer.Option("--archive/--no-archive", help="Also write <bundle>.tar.gz.")] = True,
    exports_root: Annotated[str, typer.Option("--exports-root", help="Where exports are searched.")] = "artifacts",
    device: Annotated[str | None, typer.Option("--device", help="Ship only the graph forms worth shipping to this device profile (measured by 'edgecnn bench' there, or on the emulated board of its CPU): <export>/bundle-<device>.")] = None,
    store_path: Annotated[str | None, typer.Option("--store", help="SQLite results file (default results/bench.sqlite).")] = None,
    data_dir: DataDirOpt = None,
    file: Annotated[list[str] | None, typer.Option("--file", help="A model file made elsewhere (.onnx, .tflite, .pte); repeat for several. With --dataset, each file's accuracy on its test split.")] = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    layout: LayoutOpt = None,
) -> None:
    """Build a deployment bundle: model files, manifest with sha256, labels, sample, requirements and runner.py."""
    from edgecnn.errors import EdgecnnError
    from edgecnn.export.bundle import Manifest, make_bundle
    from edgecnn.export.record import ExportRecord

    if file:
        if export_dir or model:
            raise EdgecnnError("--file bundles model files made elsewhere; not with --export or --model")
        export_dir = str(foreign_export(file, exports_root, dataset, data_dir, mean, std, layout))
    elif mean or std or layout:
        raise EdgecnnError("--mean, --std and --layout describe model files made elsewhere (--file)")
    if export_dir is None:
        if model is None:
            raise EdgecnnError("say which export: --export DIR, or --model NAME [--dataset D]")
        export_dir = str(ExportRecord.find(model, dataset, exports_root).folder)
    files = None
    if device:
        from edgecnn.bench.harness import files_for_device
        from edgecnn.bench.store import ResultStore
        from edgecnn.devices.profiles import get_profile

        files, why = files_for_device(Path(export_dir), get_profile(device), ResultStore(store_path))
        err.print(f"{device}: {', '.join(files) if files else 'every file'} ({why})", markup=False, highlight=False)
    default = Path(export_dir) / (f"bundle-{device}" if device else "bundle")
    folder = make_bundle(export_dir, out_dir or default, sample=sample, data_dir=data_dir, archive=archive,
                         files=files)
    manifest = Manifest.read(folder)
    out.print(f"bundle {folder} ({len(manifest.artifacts)} model files, {manifest.sample['count']} sample "
              f"images){' and ' + str(folder) + '.tar.gz' if archive else ''}", markup=False, highlight=False)
    out.print(f"to a board: edgecnn deploy --device NAME --bundle {folder} (or with scp: {folder}/README.md)",
              markup=False, highlight=False, soft_wrap=True)


def foreign_export(files: list[str], exports_root: str, dataset: str | None, data_dir: str | None, mean: str | None,
                   std: str | None, layout: str | None) -> Path:
    """Model files made elsewhere as an export folder (export/foreign.py), each file's test accuracy printed."""
    from edgecnn.export.foreign import import_once
    from edgecnn.export.record import ExportRecord

    from .progress import RichProgress

    folder = import_once(files, exports_root, dataset=dataset, data_dir=data_dir, mean=float_list(mean, "--mean"),
                         std=float_list(std, "--std"), layout=layout, progress=RichProgress())
    record = ExportRecord.read(folder)
    for row in record.files():
        measured = (f"test accuracy {row.accuracy:.2%} on {record.dataset} ({record.images} images, through "
                    f"{row.details['runtime']})" if row.accuracy is not None
                    else "no accuracy (no --dataset)")
        err.print(f"{row.file}: {row.format} {row.precision}, input {row.details['input']} {row.details['layout']}, "
                  f"{measured}", markup=False, highlight=False)
    return folder

