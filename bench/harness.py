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
from edgecnn.devices.transport import open_transport
from edgecnn.errors import EdgecnnError
from edgecnn.export.runner import BundleError, verify_bundle
from edgecnn.io import sha256_file

from .store import ResultStore

FORMAT_RUNTIME = {"onnx": "onnxruntime", "tflite": "litert"}


@dataclass
class BenchPlan:
    runs: int = 100
    warmup: int = 10
    threads: tuple[int, ...] | None = None  # None: each device profile's own sweep
    formats: tuple[str, ...] | None = None  # None: every file of the bundle
    precisions: tuple[str, ...] | None = None  # None: fp32 and int8
    sample: int | None = None  # None: the bundle's whole sample
    timeout: float = 600  # per remote command
    checkpoint: str | None = None  # PyTorch reference on the host; None: no reference row


@dataclass
class DeviceOutcome:
    device: str
    rows: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def load_bundle(folder: str | Path) -> dict:
    try:
        return verify_bundle(str(folder))
    except BundleError as error:
        raise EdgecnnError(f"bundle {folder}: {error}") from None


def bundle_id(folder: Path, manifest: dict) -> str:
    """Folder name of the bundle on a device: model and the manifest's hash, so a changed bundle never mixes."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in manifest["model"])
    return f"{safe}-{sha256_file(folder / 'manifest.json')[:12]}"


def steps(profile: DeviceProfile, manifest: dict, plan: BenchPlan) -> int:
    """Progress units of one device: one eval and one bench per thread count per file (+ the reference)."""
    threads = plan.threads or profile.threads
    files = len(select_artifacts(manifest, plan))
    return files * (1 + len(threads)) + (len(threads) if is_host(profile) and plan.checkpoint else 0)


def is_host(profile: DeviceProfile) -> bool:
    """This machine with edgecnn's own Python: the reference for the others (PyTorch row, host agreement)."""
    return profile.transport == "local" and not profile.python


def select_artifacts(manifest: dict, plan: BenchPlan) -> list[dict]:
    return [a for a in manifest["artifacts"] if (plan.formats is None or a["format"] in plan.formats)
            and (plan.precisions is None or a["precision"] in plan.precisions)]


def bench_device(profile: DeviceProfile, folder: Path, manifest: dict, plan: BenchPlan, store: ResultStore,
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
    report = check(profile, timeout=plan.timeout)
    artifacts = []
    for artifact in select_artifacts(manifest, plan):
        runtime = FORMAT_RUNTIME[artifact["format"]]
        if not report["packages"].get(PIP_NAMES[runtime]):
            outcome.errors.append(f"device {profile.name}: {artifact['file']} needs {PIP_NAMES[runtime]}, which "
                                  f"is not installed there; fix: {fix_command(transport.python, [PIP_NAMES[runtime]])}")
        else:
            artifacts.append(artifact)
    if not artifacts:
        return
    tick("uploading bundle", finished)
    name = bundle_id(folder, manifest)
    remote = transport.put_bundle(folder, name)
    threads = plan.threads or profile.threads
    base = {"session": session, "device": profile.name, "model": manifest["model"], "dataset": manifest["dataset"],
            "bundle": name, "batch": 1}

    def runner(*args: str) -> dict:
        argv = [transport.python, "runner.py", "--exit-on-eof", *args]
        result = transport.run(argv, cwd=remote, timeout=plan.timeout, hold_stdin=True)
        return result.json_result(f"device {profile.name}: runner {args[0]}")

    for artifact in artifacts:
        tick(f"{artifact['file']}: accuracy", finished)
        limit = ["--limit", str(plan.sample)] if plan.sample else []
        scored = runner("eval", "--model", artifact["file"], "--threads", str(max(threads)), *limit)["results"][0]
        finished += 1
        for count in threads:
            tick(f"{artifact['file']}: {count} thread{'s' * (count > 1)}", finished)
            timing = runner("bench", artifact["file"], "--threads", str(count), "--runs", str(plan.runs),
                            "--warmup", str(plan.warmup))
            row = _row(base, timing, format=artifact["format"], precision=artifact["precision"],
                       accuracy=scored["accuracy"], sample_images=scored["images"],
                       predictions=scored["predictions"])
            store.add(row)
            outcome.rows.append(row)
            finished += 1
    if is_host(profile) and plan.checkpoint:
        for count in threads:
            tick(f"pytorch eager: {count} thread{'s' * (count > 1)}", finished)
            outcome.rows.append(_reference(plan, folder, count, base, store, profile))
            finished += 1
    tick("done", finished)


def _reference(plan: BenchPlan, folder: Path, threads: int, base: dict, store: ResultStore,
               profile: DeviceProfile) -> dict:
    import sys

    from edgecnn.devices.transport import execute

    argv = [sys.executable, "-m", "edgecnn.bench.reference", plan.checkpoint, "--bundle", str(folder),
            "--threads", str(threads), "--runs", str(plan.runs), "--warmup", str(plan.warmup)]
    if plan.sample:
        argv += ["--limit", str(plan.sample)]
    result = execute(argv, timeout=plan.timeout, what="pytorch reference")
    measured = result.json_result(f"device {profile.name}: pytorch reference")
    row = _row(base, measured, format="pytorch", precision="fp32", accuracy=measured["accuracy"],
               sample_images=measured["images"], predictions=measured["predictions"])
    store.add(row)
    return row


def _row(base: dict, timing: dict, **extra) -> dict:
    keys = ("file", "runtime", "threads", "runs", "warmup", "load_ms", "first_ms", "p50_ms", "p90_ms", "p99_ms",
            "mean_ms", "std_ms", "min_ms", "max_ms", "peak_rss_mib", "versions", "machine")
    machine = timing.get("machine") or {}
    return {**base, **{k: timing.get(k) for k in keys}, "arch": machine.get("arch"), "cpu": machine.get("cpu"),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}


def run_bench(profiles: list[DeviceProfile], folder: Path, manifest: dict, plan: BenchPlan, store: ResultStore,
              tick: Callable[[str, str, int], None] = lambda device, text, done: None) -> tuple[str, list[DeviceOutcome]]:
    """Bench every device at once; returns the session id and each device's rows and errors. `manifest` is the
    bundle's, as load_bundle() verified it."""
    folder = Path(folder)
    if not select_artifacts(manifest, plan):
        have = ", ".join(f"{a['format']} {a['precision']}" for a in manifest["artifacts"])
        raise EdgecnnError(f"bundle {folder} has no file of the chosen formats/precisions (it has {have})")
    session = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    with ThreadPoolExecutor(max_workers=len(profiles)) as pool:
        futures = [pool.submit(bench_device, p, folder, manifest, plan, store, session,
                               lambda text, done, name=p.name: tick(name, text, done)) for p in profiles]
        outcomes = [f.result() for f in futures]
    _agreement_with_host(outcomes, {p.name for p in profiles if is_host(p)}, store, session)
    return session, outcomes


def _agreement_with_host(outcomes: list[DeviceOutcome], local: set[str], store: ResultStore, session: str) -> None:
    """Share of the sample where a device's top-1 equals the host's for the same file (1.0: same predictions)."""
    host = {r["file"]: r["predictions"] for o in outcomes for r in o.rows if r["device"] in local}
    for outcome in outcomes:
        for row in outcome.rows:
            if row["device"] in local:
                continue
            theirs = host.get(row["file"])
            if theirs is not None and row["predictions"] is not None and len(theirs) == len(row["predictions"]):
                row["host_agreement"] = sum(a == b for a, b in zip(theirs, row["predictions"])) / len(theirs)
                store.set_host_agreement(session, row["device"], row["file"], row["host_agreement"])
