"""`edgecnn bench`: run a deployment bundle on one or more devices and record every measurement.

For each device (concurrently, one thread each): probe it (arch, runtimes), put the bundle there, then for each
model file: the runner's `eval` on the bundle's sample (accuracy and every prediction), and the runner's `bench`
once per thread count, each in a fresh process on the device. On the host, the PyTorch eager fp32 checkpoint the
files came from is measured the same way as the reference row.

Everything the device does goes through the bundle's own runner.py, which re-checks every sha256 on the device
before it runs; the host never trusts a folder it has not verified either. Each finished measurement is written to
the results store at once: a device that drops off half-way keeps what it finished, and the others go on.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgecnn.devices.probe import PIP_NAMES, check, fix_command
from edgecnn.devices.profiles import DeviceProfile
from edgecnn.devices import open_transport
from edgecnn.devices.transport import DeviceLost
from edgecnn.errors import EdgecnnError
from edgecnn.export.bundle import Manifest

from .options import BenchPlan
from .store import ResultStore, metric_of

FORMAT_RUNTIME = {"onnx": "onnxruntime", "tflite": "litert", "ncnn": "ncnn", "executorch": "executorch"}


def counts_on(profile: DeviceProfile, plan: BenchPlan) -> bool:
    """Whether this device's files are measured by executed instructions (its judge, or --count-instructions)."""
    return profile.counts_instructions or plan.count_instructions


def thread_counts(profile: DeviceProfile, plan: BenchPlan) -> tuple[int, ...]:
    """Instruction counts are one thread's (a count of several threads' instructions is no cost measure)."""
    return (1,) if profile.counts_instructions else tuple(plan.threads or profile.threads)


@dataclass
class DeviceOutcome:
    device: str
    rows: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def locate_bundle(bundle: str | None, model: str | None, dataset: str | None, exports_root: str | Path,
                  data_dir: str | None = None, note: Callable[[str], None] = lambda text: None,
                  device: str | None = None) -> tuple[Path, Path | None]:
    """(bundle folder, the export folder it came from if known) for `edgecnn bench` and `deploy`: a bundle folder,
    a .tar.gz (unpacked into the cache, see export.bundle.unpack_cached), the newest export of `model`, or, with
    neither, the newest bundle under `exports_root` (`note` says which). For one `device`, an export's
    bundle-<device> (`edgecnn bundle --device`) is taken over its plain bundle. A missing bundle of a found export
    is built."""
    from edgecnn.export.bundle import make_bundle, newest_bundle, unpack_cached
    from edgecnn.export.record import ExportRecord
    from edgecnn.io import cache_dir

    def own(export_dir: Path) -> Path | None:
        chosen = export_dir / f"bundle-{device}" if device else None
        return chosen if chosen and (chosen / "manifest.json").is_file() else None

    if bundle is None and model is None:
        folder = newest_bundle(exports_root)
        export_dir = folder.parent if ExportRecord.exists(folder.parent) else None
        folder = (export_dir and own(export_dir)) or folder
        note(f"using the newest bundle, {folder} (--bundle or --model to choose)")
        return folder, export_dir
    if bundle is None:
        export_dir = ExportRecord.find(model, dataset, exports_root).folder
        if own(export_dir):
            note(f"using {own(export_dir)}, the bundle made for {device}")
            return own(export_dir), export_dir
        folder = export_dir / "bundle"
        if not (folder / "manifest.json").is_file():
            note(f"no bundle in {export_dir}; building it")
            make_bundle(export_dir, folder, data_dir=data_dir)
        return folder, export_dir
    path = Path(bundle)
    if path.is_file():
        return unpack_cached(path, cache_dir() / "bundles"), None
    if not path.is_dir():
        raise EdgecnnError(f"bundle not found: {path}")
    return path, path.parent if ExportRecord.exists(path.parent) else None


def reference_checkpoint(checkpoint: str | None, export_dir: Path | None) -> str | None:
    """The PyTorch checkpoint of the reference row: the one given, else the one the export was made from (None
    when it is gone)."""
    from edgecnn.export.record import ExportRecord

    if checkpoint:
        if not Path(checkpoint).is_file():
            raise EdgecnnError(f"checkpoint not found: {checkpoint}")
        return checkpoint
    if export_dir is None:
        return None
    try:
        recorded = ExportRecord.read(export_dir).checkpoint
    except EdgecnnError:
        return None
    return recorded if Path(recorded).is_file() else None


def steps(profile: DeviceProfile, manifest: Manifest, plan: BenchPlan) -> int:
    """Progress units of one device: one eval and one bench per thread count per file (+ the reference)."""
    threads = thread_counts(profile, plan)
    files = len(select_artifacts(manifest, plan))
    timed = 0 if profile.counts_instructions else len(threads)
    counted = 1 if counts_on(profile, plan) else 0
    return files * (1 + timed + counted) + (len(threads) if is_host(profile) and plan.checkpoint else 0)


def is_host(profile: DeviceProfile) -> bool:
    """This machine with edgecnn's own Python: the reference for the others (PyTorch row, host agreement)."""
    return profile.transport == "local" and not profile.python


def select_artifacts(manifest: Manifest, plan: BenchPlan) -> list[dict]:
    return [a for a in manifest.artifacts if (plan.formats is None or a["format"] in plan.formats)
            and (plan.precisions is None or a["precision"] in plan.precisions)]


def bench_device(profile: DeviceProfile, folder: Path, manifest: Manifest, plan: BenchPlan, store: ResultStore,
                 session: str, tick: Callable[[str, int], None] = lambda text, done: None) -> DeviceOutcome:
    """tick(activity, units finished so far) reports progress; a unit is one eval or one timing (see steps())."""
    outcome = DeviceOutcome(profile.name)
    try:
        _bench_device(profile, folder, manifest, plan, store, session, outcome, tick)
    except EdgecnnError as error:  # a lost device: keep what it finished, say why it stopped
        outcome.errors.append(str(error))
    return outcome


def _bench_device(profile, folder, manifest, plan, store, session, outcome, tick) -> None:
    transport = open_transport(profile)
    finished = 0
    tick("probing", finished)
    if plan.count_instructions and not profile.counter:
        raise EdgecnnError(f"device {profile.name} has no instruction counter (only the emulated boards do: "
                           "pi3-emulated, pi4-emulated, pi5-emulated)")
    report = check(profile, timeout=plan.timeout)
    threads = thread_counts(profile, plan)
    name = manifest.bundle_id
    base = {"session": session, "device": profile.name, "model": manifest.model, "dataset": manifest.dataset,
            "bundle": name, "batch": 1, "judge": "instructions" if profile.counts_instructions else "timing",
            "target": profile.cpu or None}

    def failed(artifact: dict, reason: str) -> None:
        """A file that could not be measured: a row with its reason (in the store too); the others go on."""
        row = store.add(_row(base, {"file": artifact["file"]}, format=artifact["format"],
                             precision=artifact["precision"], status="failed", error=reason))
        outcome.rows.append(row)
        outcome.errors.append(f"device {profile.name}: {artifact['file']}: {reason}")

    artifacts = []
    for artifact in select_artifacts(manifest, plan):
        package = PIP_NAMES[FORMAT_RUNTIME[artifact["format"]]]
        if report["packages"].get(package):
            artifacts.append(artifact)
        else:
            failed(artifact, f"needs {package}, which is not installed there; fix: "
                             f"{fix_command(transport.python, [package])}")
    if not artifacts:
        return
    tick("uploading bundle", finished)
    remote = transport.put_bundle(folder, name)
    sample = plan.sample or profile.sample

    json_flag = manifest.json_flag()

    def runner(command: str, *args: str):
        argv = [transport.python, "runner.py", "--exit-on-eof", command, *json_flag, *args]
        return transport.run(argv, cwd=remote, timeout=plan.timeout, hold_stdin=True)

    for artifact in artifacts:
        tick(f"{artifact['file']}: accuracy", finished)
        limit = ["--limit", str(sample)] if sample else []
        try:
            scored = runner("eval", "--model", artifact["file"], "--threads", str(max(threads)),
                            *limit).json_result("runner eval")["results"][0]
        except DeviceLost:
            raise
        except EdgecnnError as error:  # this file cannot run there: its row says why, the next file goes on
            failed(artifact, str(error))
            finished += steps_per_file(profile, plan, threads)
            continue
        finished += 1
        measured = {"format": artifact["format"], "precision": artifact["precision"], "accuracy": scored["accuracy"],
                    "top5": scored.get("top5"), "sample_images": scored["images"], "predictions": scored["predictions"],
                    "form": artifact.get("form")}
        counted = None
        if counts_on(profile, plan):
            tick(f"{artifact['file']}: counting instructions", finished)
            try:
                counted = _count(transport, profile, plan, artifact, remote)
            except DeviceLost:
                raise
            except EdgecnnError as error:
                failed(artifact, f"instruction count: {error}")
            finished += 1
        if profile.counts_instructions:
            if counted is not None:
                row = store.add(_row(base, counted, **measured, threads=1, instructions=counted["instructions"],
                                     emulated_ms=counted["emulated_ms"], profile=counted.get("profile")))
                outcome.rows.append(row)
            continue
        for count in threads:
            tick(f"{artifact['file']}: {count} thread{'s' * (count > 1)}", finished)
            try:
                timing = runner("bench", artifact["file"], "--threads", str(count), "--runs", str(plan.runs),
                                "--warmup", str(plan.warmup)).json_result("runner bench")
            except DeviceLost:
                raise
            except EdgecnnError as error:
                failed(artifact, f"{count} thread(s): {error}")
                finished += 1
                continue
            extra = {"instructions": counted["instructions"], "profile": counted.get("profile")} \
                if counted and count == 1 else {}
            row = store.add(_row(base, timing, **measured, **extra))
            outcome.rows.append(row)
            finished += 1
    if is_host(profile) and plan.checkpoint:
        for count in threads:
            tick(f"pytorch eager: {count} thread{'s' * (count > 1)}", finished)
            try:
                outcome.rows.append(_reference(plan, folder, count, base, store, profile))
            except EdgecnnError as error:
                failed({"file": "pytorch-eager", "format": "pytorch", "precision": "fp32"}, str(error))
            finished += 1
    tick("done", finished)


def steps_per_file(profile: DeviceProfile, plan: BenchPlan, threads) -> int:
    return 1 + (0 if profile.counts_instructions else len(threads)) + (1 if counts_on(profile, plan) else 0)


COUNT_LINE = "edgecnn-icount "


def _count(transport, profile: DeviceProfile, plan: BenchPlan, artifact: dict, remote: str) -> dict:
    """Executed instructions per inference of one file, one thread, under the profile's counting emulator: the
    runner's `count` between the counter's markers, the count read off its stderr."""
    args = ["count", artifact["file"], "--runs", str(plan.count_runs), "--warmup", "2"]
    blocks = f"{remote.rstrip('/')}/.icount-blocks.txt" if plan.profile else None
    if blocks and profile.transport != "local":
        raise EdgecnnError("--profile needs the board's libraries on this machine (a local emulated board)")
    python = profile.counter
    result = transport.run(["env", f"EDGECNN_ICOUNT_PROFILE={blocks}", python, "runner.py", "--exit-on-eof", *args]
                           if blocks else [python, "runner.py", "--exit-on-eof", *args],
                           cwd=remote, timeout=plan.timeout, hold_stdin=True)
    measured = result.json_result("runner count")
    counts = [line for line in result.stderr.splitlines() if line.startswith(COUNT_LINE)]
    if not counts:
        raise EdgecnnError(f"{profile.counter} counted nothing: it is not the emulated board's counting python "
                           "(scripts/arm64-device.sh builds it)")
    measured["instructions"] = int(counts[-1][len(COUNT_LINE):]) / plan.count_runs
    if blocks:
        from .profile import hot_symbols

        measured["profile"] = hot_symbols(Path(blocks), measured.get("maps") or [], plan.count_runs)
    return measured


def _reference(plan: BenchPlan, folder: Path, threads: int, base: dict, store: ResultStore,
               profile: DeviceProfile) -> dict:
    import sys

    from edgecnn.devices.transport import execute

    argv = [sys.executable, "-m", "edgecnn.bench.reference", plan.checkpoint, "--bundle", str(folder),
            "--threads", str(threads), "--runs", str(plan.runs), "--warmup", str(plan.warmup)]
    if plan.sample:
        argv += ["--limit", str(plan.sample)]
    result = execute(argv, timeout=plan.timeout, what="pytorch reference")
    measured = result.json_result("pytorch reference")
    return store.add(_row(base, measured, format="pytorch", precision="fp32", accuracy=measured["accuracy"],
                          top5=measured.get("top5"), sample_images=measured["images"], predictions=measured["predictions"]))


def _row(base: dict, timing: dict, **extra) -> dict:
    keys = ("file", "runtime", "threads", "runs", "warmup", "load_ms", "first_ms", "p50_ms", "p90_ms", "p99_ms",
            "mean_ms", "std_ms", "min_ms", "max_ms", "peak_rss_mib", "versions", "machine", "emulated_ms")
    machine = timing.get("machine") or {}
    return {**base, **{k: timing.get(k) for k in keys}, "arch": machine.get("arch"), "cpu": machine.get("cpu"),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}


def lanes(profiles: list[DeviceProfile]) -> list[list[DeviceProfile]]:
    """Devices that run on this machine's own cores (the host, the emulated boards) share one lane and are benched
    one after another: an emulator working beside a timing on the host would slow that timing (on two cores, the
    host's 2-thread rows by tens of times). Each SSH device, which computes on its own CPU, has a lane of its own."""
    local = [p for p in profiles if p.transport == "local"]
    return ([local] if local else []) + [[p] for p in profiles if p.transport != "local"]


def run_bench(profiles: list[DeviceProfile], folder: Path, manifest: Manifest, plan: BenchPlan, store: ResultStore,
              tick: Callable[[str, str, int], None] = lambda device, text, done: None) -> tuple[str, list[DeviceOutcome]]:
    """Bench the devices, remote ones at once (see lanes); returns the session id and each device's rows and
    errors. `manifest` is the bundle's, as Manifest.read() verified it."""
    folder = Path(folder)
    if not select_artifacts(manifest, plan):
        have = ", ".join(f"{a['format']} {a['precision']}" for a in manifest.artifacts)
        raise EdgecnnError(f"bundle {folder} has no file of the chosen formats/precisions (it has {have})")
    session = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]

    def lane(devices: list[DeviceProfile]) -> list[DeviceOutcome]:
        return [bench_device(p, folder, manifest, plan, store, session,
                             lambda text, done, name=p.name: tick(name, text, done)) for p in devices]

    groups = lanes(profiles)
    pool = ThreadPoolExecutor(max_workers=len(groups))
    try:
        futures = [pool.submit(lane, group) for group in groups]
        found = {o.device: o for f in futures for o in f.result()}
        outcomes = [found[p.name] for p in profiles]
    except KeyboardInterrupt:
        # Ctrl-C reached the devices' processes too; do not wait for the next file of every device
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    _agreement_with_host(outcomes, {p.name for p in profiles if is_host(p)}, store)
    return session, outcomes


def _agreement_with_host(outcomes: list[DeviceOutcome], local: set[str], store: ResultStore) -> None:
    """Share of the sample where a device's top-1 equals the host's for the same file (1.0: same predictions)."""
    host = {r["file"]: r["predictions"] for o in outcomes for r in o.rows if r["device"] in local
            and r.get("predictions")}
    for outcome in outcomes:
        for row in outcome.rows:
            if row["device"] in local or not row.get("predictions"):
                continue
            theirs = host.get(row["file"])
            if theirs is not None and len(theirs) == len(row["predictions"]):
                row["host_agreement"] = sum(a == b for a, b in zip(theirs, row["predictions"])) / len(theirs)
                store.set_host_agreement(row["row_id"], row["host_agreement"])


def files_for_device(export_dir: Path, profile: DeviceProfile, store: ResultStore) -> tuple[list[str] | None, str]:
    """The model files of an export worth shipping to a device: per format and precision, the graph form the
    results store shows cheapest there (by the device's own measurements, else, for a real Pi not benched yet, by
    the instruction counts of the emulated board with its CPU). None (every file) when nothing was measured;
    the second value says which measurements decided."""
    from edgecnn.export.bundle import Manifest

    folder = Path(export_dir) / "bundle"
    try:
        bundle = Manifest.read(folder).bundle_id
    except EdgecnnError:
        return None, f"no measured bundle in {export_dir}"
    rows = [r for r in store.rows() if r["bundle"] == bundle and r["status"] == "ok" and r["format"] != "pytorch"]
    own = [r for r in rows if r["device"] == profile.name and r.get(metric_of(r)) is not None]
    stand_in = [r for r in rows if profile.cpu and r.get("target") == profile.cpu and r.get("judge") == "instructions"
                and r.get("instructions") is not None]
    chosen = own or stand_in
    if not chosen:
        return None, f"nothing measured on {profile.name}{' or its CPU ' + profile.cpu if profile.cpu else ''} yet"
    best: dict[tuple[str, str], dict] = {}
    for row in chosen:
        key = (row["format"], row["precision"])
        if key not in best or row[metric_of(row)] < best[key][metric_of(best[key])]:
            best[key] = row
    source = profile.name if own else f"{chosen[0]['device']} (instruction counts on {profile.cpu})"
    return sorted({r["file"] for r in best.values()}), f"cheapest form per format and precision on {source}"
