"""Gather the report's rows from the files the earlier stages wrote.

- runs/<name>/config.json + result.json (+ pruning.json / structured.json / depth.json): the accuracy table, pruning
  curves;
- artifacts/<name>/export.json + bundle/manifest.json: which bundle came from which run, file sizes, and each
  file's accuracy on the whole test split (measured at export through the file's own runtime);
- the results store (SQLite): latency and memory per device, file and thread count.

A bundle is recognised by the id the bench stage gives it on devices (model + manifest hash), so a store row
finds its export folder and run even when parent and pruned runs share one model name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecnn.bench.store import metric_of
from edgecnn.io import sha256_file

PAPER_DATASETS = {"cifar10": 10, "cifar100": 100}
#: the width of a file's parameters and multiplies, for its MicroNet score
PRECISION_BITS = {"fp32": 32, "fp16": 16, "int8": 8}


def micronet_score(params: int | None, mflops: float | None, precision: str) -> float | None:
    from edgecnn.compress.zoo.measure import micronet_score as score

    bits = PRECISION_BITS.get(precision, 32)
    return score(params, mflops, bits, bits)


@dataclass
class ReportData:
    accuracy: list[dict] = field(default_factory=list)  # one row per finished run
    deployment: list[dict] = field(default_factory=list)  # newest measurement per device x bundle x file x threads
    pruning: list[dict] = field(default_factory=list)  # {"run", "kind", "rows"} per pruned run
    bits: list[dict] = field(default_factory=list)  # {"run", "model", "settings", "rows", "loses_1pp_at"} per sweep
    recommendations: list[dict] = field(default_factory=list)
    devices: list[dict] = field(default_factory=list)  # per device: its CPU, system, runtime versions, bundles run
    max_drop: float = 1.0
    sources: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "deployment": self.deployment, "pruning": self.pruning, "bits": self.bits,
                "recommendations": self.recommendations, "devices": self.devices, "max_drop_pp": self.max_drop,
                "sources": self.sources}


def _json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # a half-written or foreign file is left out of the report, not fatal


def finished_runs(runs_dir: Path) -> list[tuple[Path, dict, dict]]:
    """(folder, config, result) of every finished run, oldest first. Not edgecnn.runs.list_runs: that raises on a
    damaged config.json, and one broken run folder must not stop a report about all the others."""
    found = []
    for config_path in runs_dir.glob("*/config.json") if runs_dir.is_dir() else []:
        config, result = _json(config_path), _json(config_path.parent / "result.json")
        if isinstance(config, dict) and isinstance(result, dict) and result.get("status") == "finished":
            found.append((config_path.parent, config, result))
    return sorted(found, key=lambda item: (item[1].get("created", ""), item[0].name))


def paper_comparable(config: dict) -> bool:
    """A run the paper's published rows apply to: trained (not derived), on CIFAR-10/100 at 3 channels."""
    data = config.get("data") or {}
    return (not config.get("lineage") and config.get("dataset") in PAPER_DATASETS
            and data.get("in_chans") == 3 and data.get("num_classes") == PAPER_DATASETS[config["dataset"]])


def _accuracy_row(path: Path, config: dict, result: dict) -> dict:
    from edgecnn.compress.zoo.paper import published

    lineage = config.get("lineage") or {}
    paper = published(config["model"], PAPER_DATASETS[config["dataset"]]) if paper_comparable(config) else None
    params = result.get("params")
    return {"run": path.name, "run_dir": str(path), "model": config["model"], "dataset": config.get("dataset"),
            "method": lineage.get("method", "trained"), "parent": Path(lineage["parent"]).name if lineage else None,
            "epochs": result.get("epochs"), "params": params, "mflops": result.get("mflops"),
            "size_mib": None if params is None else params * 4 / 2**20,
            "test_acc": result.get("test_acc"), "test_top5": result.get("test_top5"), "created": config.get("created"),
            "paper_params": paper.params if paper else None, "paper_mflops": paper.mflops if paper else None,
            "paper_top1": paper.top1 / 100 if paper and paper.top1 is not None else None}


def _bundle_index(artifacts_dir: Path) -> dict[str, dict]:
    """bundle id (as the bench stage names it) -> the export folder, its run and its files. Read through the export
    and bundle stages' own readers; a folder either cannot read is left out of the report, not fatal."""
    from edgecnn.errors import EdgecnnError
    from edgecnn.export.bundle import Manifest
    from edgecnn.export.record import ExportRecord

    index = {}
    for manifest_path in sorted(artifacts_dir.glob("*/bundle*/manifest.json")) if artifacts_dir.is_dir() else []:
        try:
            manifest, export = Manifest.read(manifest_path.parent), ExportRecord.read(manifest_path.parent.parent)
        except EdgecnnError:
            continue
        reference = export.reference
        index[manifest.bundle_id] = {
            "export": export.folder.name, "run_dir": str(Path(export.checkpoint).parent),
            "path": str(manifest_path.parent),
            "model": export.model, "dataset": export.dataset,
            "files": {a.file: asdict(a) for a in export.artifacts if a.file},
            "pytorch": asdict(reference) if reference else None}
    return index


#: pruning kind -> the per-step log its `edgecnn compress` command writes into the derived run
PRUNING_LOGS = {"unstructured": "pruning.json", "structured": "structured.json", "depth": "depth.json"}


def collect(*, runs_dir: str | Path = "runs", artifacts_dir: str | Path = "artifacts", store=None,
            dataset: str | None = None, models: list[str] | None = None, max_drop: float = 1.0) -> ReportData:
    """Everything the report shows. `models` are canonical zoo names (None: all)."""
    runs_dir, artifacts_dir = Path(runs_dir), Path(artifacts_dir)

    def wanted(model: str | None, data: str | None) -> bool:
        return (models is None or model in models) and (dataset is None or data == dataset)

    report = ReportData(max_drop=max_drop)
    by_dir: dict[str, dict] = {}
    for path, config, result in finished_runs(runs_dir):
        row = _accuracy_row(path, config, result)
        by_dir[str(path.resolve())] = row
        if not wanted(row["model"], row["dataset"]):
            continue
        if row["method"] == "bits":  # a simulated sweep (compress/methods/bits.py): curves, not a model's row
            rows = _json(path / "bits.json")
            if isinstance(rows, list) and rows:
                report.bits.append({"run": path.name, "model": row["model"], "rows": rows,
                                    "settings": (config.get("lineage") or {}).get("settings", {}),
                                    "loses_1pp_at": result.get("loses_1pp_at", {})})
            continue
        report.accuracy.append(row)
        for kind, filename in PRUNING_LOGS.items():
            steps = _json(path / filename)
            if isinstance(steps, list) and len(steps) > 1:
                report.pruning.append({"run": path.name, "kind": kind, "rows": steps})

    bundles = _bundle_index(artifacts_dir)
    newest: dict[tuple, dict] = {}
    # a bundle of a model whose export folder now holds another bundle was replaced (export --force, a pipeline
    # that exported again): its files are gone, so its measurements are left out rather than shown as stale rows
    bundled = {(entry["model"], entry["dataset"]) for entry in bundles.values()}
    superseded = 0
    for row in store.rows() if store is not None else []:
        if row["status"] != "ok" or not wanted(row["model"], row["dataset"]):  # failed files have no numbers
            continue
        if row["bundle"] not in bundles and (row["model"], row["dataset"]) in bundled:
            superseded += 1
            continue
        newest[(row["device"], row["bundle"], row["file"] or row["format"], row["threads"])] = row  # ids ascend
    for row in newest.values():
        bundle = bundles.get(row["bundle"], {})
        run = by_dir.get(str(Path(bundle["run_dir"]).resolve())) if bundle.get("run_dir") else None
        exported = (bundle.get("files", {}).get(row["file"]) if row["format"] != "pytorch" else bundle.get("pytorch")) or {}
        precision = row["precision"]
        report.deployment.append({
            "device": row["device"], "arch": row["arch"], "artifact": bundle.get("export", row["bundle"]),
            "model": row["model"], "dataset": row["dataset"], "file": row["file"] or "pytorch eager",
            "format": row["format"], "precision": precision, "runtime": row["runtime"], "threads": row["threads"],
            "bytes": exported.get("bytes"), "test_acc": exported.get("accuracy"), "test_top5": exported.get("top5"),
            "device_acc": row["accuracy"], "device_top5": row.get("top5"), "sample_images": row["sample_images"],
            "host_agreement": row["host_agreement"], "p50_ms": row["p50_ms"], "p90_ms": row["p90_ms"],
            "p99_ms": row["p99_ms"], "peak_rss_mib": row["peak_rss_mib"], "runs": row["runs"],
            "judge": row.get("judge") or "timing", "target": row.get("target"), "form": exported.get("form"),
            "instructions": row.get("instructions"), "emulated_ms": row.get("emulated_ms"),
            "file_mmacs": exported.get("mmacs"), "file_ops": exported.get("ops"),
            "model_mmacs": (bundle.get("pytorch") or {}).get("mmacs"),
            "params": run["params"] if run else None, "mflops": run["mflops"] if run else None,
            "micronet": micronet_score(run["params"] if run else None, run["mflops"] if run else None, precision),
            "timestamp": row["timestamp"], "session": row["session"]})
    report.deployment.sort(key=lambda r: (r["device"], r["artifact"], r["format"], r["precision"], r["threads"] or 0))
    report.devices = _devices(list(newest.values()), bundles)
    report.recommendations = recommend(report.deployment, max_drop, real_boards())
    report.sources = {"runs": str(runs_dir), "artifacts": str(artifacts_dir),
                      "store": str(store.path) if store is not None else None,
                      "store_sha256": sha256_file(store.path) if store is not None and store.path.is_file() else None,
                      "superseded_measurements": superseded}
    return report


def _devices(rows: list[dict], bundles: dict[str, dict]) -> list[dict]:
    """Per device, what its runner reported in its newest measurement, and the bundle folders measured there."""
    from edgecnn.export.runner import ARM_CORES  # runners before the names reported ARM's part numbers

    found = {}
    for row in sorted(rows, key=lambda r: r["timestamp"] or ""):
        machine = row.get("machine") or {}
        if row["format"] == "pytorch":  # the reference row runs in edgecnn's process, not the runner: no versions
            found.setdefault(row["device"], {"bundles": set()})
            continue
        entry = found.setdefault(row["device"], {"bundles": set()})
        entry.update(device=row["device"], judge=row.get("judge") or "timing", arch=row["arch"] or machine.get("arch"),
                     cpu=ARM_CORES.get(str(machine.get("cpu") or row.get("cpu") or "").lower(),
                                       machine.get("cpu") or row.get("cpu")), system=machine.get("system"),
                     python=machine.get("python"), versions=row.get("versions") or {})
        entry["bundles"].add(bundles.get(row["bundle"], {}).get("path", row["bundle"]))
    return [{**entry, "bundles": sorted(entry["bundles"])} for name, entry in sorted(found.items()) if "judge" in entry]


def accuracy_of(row: dict) -> float | None:
    """The accuracy a deployment row is judged by: the file's whole-test-split accuracy from its export when known,
    else the device's score on the bundle's sample."""
    return row["test_acc"] if row["test_acc"] is not None else row["device_acc"]


def real_boards() -> dict[str, str]:
    """Device profiles judged by timing that name their CPU (rpi3, rpi4, rpi5, ...): device -> CPU."""
    from edgecnn.devices.profiles import list_profiles

    return {name: p.cpu for name, p in list_profiles().items() if p.cpu and not p.counts_instructions}



def recommend(rows: list[dict], max_drop: float, boards: dict[str, str] | None = None) -> list[dict]:
    """Per device: the deployable file (PyTorch eager is a reference, not a deliverable) with the lowest cost by
    the device's judge (p50 latency; executed instructions on the emulated boards) among those within max_drop
    percentage points of the most accurate file measured on that device. `boards` (real device -> its CPU) adds,
    for each board with no measurement of its own, the pick of the emulated board of the same CPU."""
    picks = []
    for device in sorted({r["device"] for r in rows}):
        judge = next(r.get("judge") or "timing" for r in rows if r["device"] == device)
        metric = metric_of({"judge": judge})
        candidates = [r for r in rows if r["device"] == device and r["format"] != "pytorch"
                      and r.get(metric) is not None and accuracy_of(r) is not None]
        if not candidates:
            continue
        best = max(accuracy_of(r) for r in candidates)
        within = [r for r in candidates if accuracy_of(r) >= best - max_drop / 100 - 1e-12]
        pick = min(within, key=lambda r: (r[metric], r["threads"] or 0))
        picks.append({"device": device, "artifact": pick["artifact"], "file": pick["file"], "form": pick.get("form"),
                      "threads": pick["threads"], "judge": judge, "metric": metric, "value": pick[metric],
                      "p50_ms": pick["p50_ms"], "instructions": pick.get("instructions"),
                      "accuracy": accuracy_of(pick), "best_accuracy": best, "max_drop_pp": max_drop,
                      "candidates": len(candidates), "target": pick.get("target"), "by": None})
    measured = {p["device"] for p in picks}
    for board, cpu in sorted((boards or {}).items()):
        stand_in = next((p for p in picks if p["judge"] == "instructions" and p["target"] == cpu), None)
        if board not in measured and stand_in:  # until the board itself is benched, its CPU's emulated count rules
            picks.append({**stand_in, "device": board, "by": stand_in["device"], "threads": 1})
    return picks


def pareto_front(rows: list[dict]) -> list[dict]:
    """The rows no other row beats on both latency (lower) and accuracy (higher), fastest first."""
    ranked = sorted((r for r in rows if r["p50_ms"] is not None and accuracy_of(r) is not None),
                    key=lambda r: (r["p50_ms"], -accuracy_of(r)))
    front, best = [], float("-inf")
    for row in ranked:
        if accuracy_of(row) > best:
            front.append(row)
            best = accuracy_of(row)
    return front
