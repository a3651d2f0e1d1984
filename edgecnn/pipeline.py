"""`edgecnn pipeline`: train (or reuse) -> export -> bundle -> bench on each device -> report, for several models.

Each stage reads the previous stage's files and is skipped when its output is already there and up to date, so a
rerun after an interruption continues where it stopped:

- train: the pipeline's own run `<model>-<dataset>-pipeline` is reused when finished and resumed from its last
  epoch when not; without it, the newest finished run of the model on the dataset is reused (`--retrain` trains
  anew);
- export: `artifacts/<run>/export.json` is kept when it is newer than the checkpoint, was made with the same
  formats and int8 setting, and lists every file as checked;
- bundle: kept when its manifest is newer than export.json and its sha256 list verifies;
- qat: when an int8 file of the export loses more than `qat_above_pp` points against PyTorch fp32, a
  quantization-aware fine-tune of the run (`<run>-qat`, compress/methods/qat.py) is made, exported, bundled and
  benched next to the original; a finished `<run>-qat` newer than the run's checkpoint is reused, an interrupted
  or older one is made again;
- bench: skipped per device when the results store already holds every (file, thread count) of this bundle on
  that device; a device that failed half-way is benched again (its finished rows stay in the store);
- report: always rewritten (it only reads).

With `ray` set, each model's chain up to the bundle is a Ray task (edgecnn/sweep.py) and this process benches the
bundles and writes the store and the report once the tasks have ended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.errors import EdgecnnError
from edgecnn.bench.options import BenchPlan
from edgecnn.export.options import ExportOptions
from edgecnn.report import ReportData


@dataclass
class PipelineConfig:
    models: tuple[str, ...] = ("exp13",)
    dataset: str = "fashion-mnist"
    recipe: str = "fast"
    epochs: int | None = 1  # a first run that ends on a 2-core CPU in well under an hour; None: the recipe's
    batch_size: int | None = None
    lr: float | None = None
    retrain: bool = False
    export: ExportOptions = field(default_factory=lambda: ExportOptions(int8=True))  # the main job ships int8
    devices: tuple[str, ...] = ("host",)
    threads: tuple[int, ...] | None = None  # None: each device profile's own
    bench_runs: int = BenchPlan.runs
    bench_warmup: int = BenchPlan.warmup
    sample: int | None = None
    max_drop: float = 1.0
    qat_above_pp: float | None = 0.5  # int8 drop that triggers a QAT run (worst int8 file, pp); None: never
    qat_epochs: int = 1
    qat_images_per_epoch: int | None = None  # None: the whole training split
    data_dir: str | None = None
    download: bool = False  # let the training stage download CIFAR into data_dir (the later stages then find it)
    verify: bool = True  # False: train on a CIFAR folder that is the user's own copy (--no-verify; the run records it)
    runs_dir: str | None = None  # None: ./runs or $EDGECNN_RUNS_DIR
    artifacts_dir: str = "artifacts"
    store: str | None = None
    report_dir: str = "results/report"
    train_only: bool = False  # stop each chain after training (`edgecnn reproduce paper-tables --train`)
    ray: str | None = None  # None: one model after another here; else a Ray address (edgecnn/sweep.py)
    cpus_per_task: float = 1
    gpus_per_task: float = 0
    workdir: str | None = None  # with ray: the folder every task runs in (shared storage on a cluster)


@dataclass
class StageLog:
    """What each stage did, for the summary table and the tests: (model, stage, 'done'|'skipped'|'failed', why)."""

    entries: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, model: str, stage: str, status: str, detail: str) -> None:
        self.entries.append((model, stage, status, detail))


class Hooks:
    """The CLI's progress drawing; the library default is silent."""

    def stage(self, model: str, name: str) -> None:
        """Called as each stage of a model begins (model "all" for the report)."""

    def train_reporter(self):
        return None

    def export_progress(self):
        return None

    def sweep_event(self, model: str, what: str, state: dict) -> None:
        """Called by a Ray sweep on every task state change (state: model -> queued/running/done/failed)."""

    def bench_tick(self, profiles, manifest, plan):
        from contextlib import nullcontext

        return nullcontext(lambda device, text, done: None)


def pipeline_run_name(model: str, dataset: str) -> str:
    from edgecnn.compress.zoo import model_slug

    return f"{model_slug(model)}-{dataset}-pipeline"


def train_stage(model: str, config: PipelineConfig, log: StageLog, hooks: Hooks):
    from edgecnn.compress.train import TrainConfig, train
    from edgecnn.compress.rebuild import find_run
    from edgecnn.runs import Run, runs_root

    own = runs_root(config.runs_dir) / pipeline_run_name(model, config.dataset)
    if (own / "result.json").is_file():
        log.add(model, "train", "skipped", f"{own} is finished")
        return Run(own)
    if (own / "config.json").is_file():
        log.add(model, "train", "done", f"resumed {own}")
        return train(resume=own, reporter=hooks.train_reporter())
    if not config.retrain:
        try:
            run = find_run(model, config.dataset, config.runs_dir)
            log.add(model, "train", "skipped", f"reusing the finished run {run.path}")
            return run
        except EdgecnnError:
            pass  # none yet: train one
    trained = train(TrainConfig(model=model, dataset=config.dataset, recipe=config.recipe, epochs=config.epochs,
                                batch_size=config.batch_size, lr=config.lr, data_dir=config.data_dir,
                                download=config.download, verify=config.verify, runs_dir=config.runs_dir,
                                name=own.name), reporter=hooks.train_reporter())
    log.add(model, "train", "done", f"trained {trained.path}")
    return trained


def _export_is_current(folder: Path, checkpoint: Path, config: PipelineConfig) -> bool:
    """export.json is complete, newer than the checkpoint, made with these options, and every file checked."""
    from dataclasses import asdict

    from edgecnn.export.record import ExportRecord

    try:
        record = ExportRecord.read(folder)
    except EdgecnnError:
        return False
    def files_made_by(options: dict) -> dict:  # threads only says how the accuracy was measured
        return {k: v for k, v in options.items() if k != "threads"}

    # a record written before an option existed made its files with that option's default (fp16: none)
    defaults = json.loads(json.dumps(asdict(ExportOptions())))
    wanted = json.loads(json.dumps(asdict(config.export)))  # tuples as the JSON record holds them
    record.options = {**defaults, **record.options}
    return (record.complete and files_made_by(record.options) == files_made_by(wanted)
            and record.path.stat().st_mtime >= checkpoint.stat().st_mtime
            and all(a.ok for a in record.artifacts) and all((folder / a.file).is_file() for a in record.files()))


def export_stage(model: str, run, config: PipelineConfig, log: StageLog, hooks: Hooks) -> Path:
    from edgecnn.export.pipeline import export_checkpoint

    checkpoint = run.checkpoint("best")
    folder = Path(config.artifacts_dir) / run.path.name
    if _export_is_current(folder, checkpoint, config):
        log.add(model, "export", "skipped", f"{folder}/export.json is up to date")
        return folder
    report = export_checkpoint(checkpoint, folder, config.export, data_dir=config.data_dir,
                               progress=hooks.export_progress())
    failed = [a["name"] for a in report["artifacts"] if a["status"] != "ok"]
    log.add(model, "export", "failed" if failed else "done",
            f"{folder}" + (f" ({', '.join(failed)} failed; the rest goes on)" if failed else ""))
    return folder


def int8_drop_pp(export_dir: Path) -> float | None:
    """The worst int8 file's accuracy loss against PyTorch fp32, in points (None: no measured int8 file)."""
    from edgecnn.export.record import ExportRecord

    return ExportRecord.read(export_dir).int8_drop_pp()


def qat_stage(model: str, run, export_dir: Path, config: PipelineConfig, log: StageLog, hooks: Hooks) -> Path | None:
    """Export folder of a quantization-aware fine-tune of `run` when its int8 files lose more than
    config.qat_above_pp points; None when they do not (or int8 or the trigger is off)."""
    import shutil

    from edgecnn.compress.methods import FinetuneConfig
    from edgecnn.compress.methods.lineage import load_parent
    from edgecnn.compress.methods.qat import quantization_aware_finetune
    from edgecnn.runs import Run, runs_root

    if not config.export.int8 or config.qat_above_pp is None:
        return None
    drop = int8_drop_pp(export_dir)
    if drop is None or drop <= config.qat_above_pp:
        log.add(model, "qat", "skipped", "no int8 file measured" if drop is None else
                f"int8 loses {drop:.2f} pp, within {config.qat_above_pp:g} pp")
        return None
    folder = runs_root(config.runs_dir) / f"{run.path.name}-qat"
    why = f"int8 lost {drop:.2f} pp (> {config.qat_above_pp:g})"
    parent = run.checkpoint("best")
    finished = folder / "result.json"
    if finished.is_file() and finished.stat().st_mtime >= parent.stat().st_mtime:
        status, what = "skipped", f"{why}; reusing the finished {folder}"
    else:
        if folder.exists():  # interrupted, or older than its parent: a few epochs of this pipeline's own, made again
            shutil.rmtree(folder)
        finetune = FinetuneConfig(epochs=config.qat_epochs, lr=1e-3, schedule="cosine", patience=0, min_lr=0.0,
                                  images_per_epoch=config.qat_images_per_epoch)
        quantization_aware_finetune(load_parent(parent, config.data_dir), finetune_config=finetune,
                                    runs_dir=config.runs_dir, name=folder.name, reporter=hooks.train_reporter())
        status, what = "done", f"{why}: fine-tuned {folder}"
    qat_export = export_stage(model, Run(folder), config, log, hooks)
    after = int8_drop_pp(qat_export)
    log.add(model, "qat", status, what + ("" if after is None else f"; its int8 loses {after:.2f} pp"))
    return qat_export


def bundle_stage(model: str, export_dir: Path, config: PipelineConfig, log: StageLog) -> Path:
    from edgecnn.export.bundle import bundle_is_current, make_bundle

    folder = export_dir / "bundle"
    if bundle_is_current(export_dir, folder):
        log.add(model, "bundle", "skipped", f"{folder} is up to date")
        return folder
    make_bundle(export_dir, folder, data_dir=config.data_dir)  # none yet, older than the export, or damaged
    log.add(model, "bundle", "done", f"{folder} and its .tar.gz")
    return folder


def bench_stage(model: str, bundle: Path, config: PipelineConfig, log: StageLog, hooks: Hooks, store) -> list[str]:
    """Bench the devices that lack a complete set of rows for this bundle; returns the devices' error lines."""
    from edgecnn.bench.harness import reference_checkpoint, run_bench, select_artifacts, thread_counts
    from edgecnn.devices.profiles import get_profile
    from edgecnn.export.bundle import Manifest

    manifest = Manifest.read(bundle)
    plan = BenchPlan(runs=config.bench_runs, warmup=config.bench_warmup, threads=config.threads, sample=config.sample,
                     checkpoint=reference_checkpoint(None, Path(bundle).parent))
    name = manifest.bundle_id
    have = {(r["device"], r["file"], r["threads"]) for r in store.rows() if r["bundle"] == name
            and r["status"] == "ok"}  # a file that failed is benched again
    todo = []
    for device in config.devices:
        profile = get_profile(device)
        needed = {(profile.name, a["file"], t) for a in select_artifacts(manifest, plan)
                  for t in thread_counts(profile, plan)}
        if needed <= have:
            log.add(model, f"bench {profile.name}", "skipped", f"{len(needed)} measurements already in {store.path}")
        else:
            todo.append(profile)
    if not todo:
        return []
    with hooks.bench_tick(todo, manifest, plan) as tick:
        _, outcomes = run_bench(todo, bundle, manifest, plan, store, tick)
    errors = []
    for outcome in outcomes:
        log.add(model, f"bench {outcome.device}", "failed" if outcome.errors else "done",
                f"{len(outcome.rows)} measurements" + (f"; {outcome.errors[0]}" if outcome.errors else ""))
        errors += outcome.errors
    return errors


def model_chain(model: str, config: PipelineConfig, log: StageLog, hooks: Hooks) -> list[Path]:
    """One model's train -> export -> (qat) -> bundle; returns the bundles to bench (none with train_only)."""
    hooks.stage(model, "train")
    run = train_stage(model, config, log, hooks)
    if config.train_only:
        return []
    hooks.stage(model, "export")
    export_dir = export_stage(model, run, config, log, hooks)
    if config.export.int8 and config.qat_above_pp is not None:
        hooks.stage(model, "qat")
    qat_export = qat_stage(model, run, export_dir, config, log, hooks)
    bundles = []
    for folder in (export_dir, qat_export) if qat_export else (export_dir,):
        hooks.stage(model, "bundle")
        bundles.append(bundle_stage(model, folder, config, log))
    return bundles


def run_pipeline(config: PipelineConfig, hooks: Hooks | None = None) -> tuple[StageLog, ReportData, dict, list[str]]:
    """Every model through every stage, then the report. Returns (stage log, report data, report files, errors)."""
    from edgecnn.bench.store import ResultStore
    from edgecnn.compress.zoo import resolve
    from edgecnn.data import dataset_info
    from edgecnn.devices.profiles import get_profile
    from edgecnn.report import collect, write_report
    from edgecnn.runs import runs_root

    hooks = hooks or Hooks()
    if config.ray is not None:
        from edgecnn.sweep import placed

        config = placed(config)  # absolute paths under the work folder, the same on every node
    models = [resolve(m) for m in config.models]  # unknown names fail here, before an hour of training
    config.dataset = dataset_info(config.dataset).name
    for device in config.devices:
        get_profile(device)  # an unknown device fails now, not after the training
    store = None if config.train_only else ResultStore(config.store)  # the driver alone writes it
    log, errors = StageLog(), []
    if config.ray is None:
        for model in models:  # each model benched as soon as its bundles exist: a long sweep keeps what it measured
            for bundle in model_chain(model, config, log, hooks):
                hooks.stage(model, "bench")
                errors += bench_stage(model, bundle, config, log, hooks, store)
    else:
        from edgecnn.sweep import run_chains

        # every chain first, then every bench from this process: the devices are reachable from here, and timing
        # on this machine while trainings run beside it would measure the trainings
        for model, bundles in run_chains(models, config, log, hooks, model_chain).items():
            for bundle in bundles:
                hooks.stage(model, "bench")
                errors += bench_stage(model, bundle, config, log, hooks, store)
    if config.train_only:
        return log, None, {}, errors
    hooks.stage("all", "report")
    data = collect(runs_dir=runs_root(config.runs_dir), artifacts_dir=config.artifacts_dir, store=store,
                   dataset=config.dataset, models=models, max_drop=config.max_drop)
    files = write_report(data, config.report_dir, title=f"edgecnn report: {', '.join(models)} on {config.dataset}")
    log.add("all", "report", "done", str(files["report.html"]))
    return log, data, files, errors
