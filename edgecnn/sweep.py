"""`edgecnn pipeline --ray ADDRESS`: each model's chain (train -> export -> qat -> bundle) as a Ray task.

- Address: `local` starts a Ray instance in this process on this machine's cores; `auto` joins the cluster this
  machine belongs to (`ray start` ran here); `ray://HOST:10001` or `HOST:6379` names one.
- Files: every task runs in the work folder (`--workdir`, default the current folder) and writes its run and
  artifact folders there, at the same absolute paths as the driver sees them. On a cluster that folder must be
  shared storage (NFS or the like) that every node mounts at the same path: checkpoints and bundles are hundreds of
  MB across a sweep, and a folder the driver already reads is simpler and more robust than shipping them back
  through Ray's object store. The results store (SQLite, one writer) is written by the driver only: the driver
  benches the bundles once every task has ended, so nothing is timed on a machine where trainings still run.
- Threads and allocator: a task gets `--cpus-per-task` cores (Ray reserves them) and sets torch's and OpenMP's
  threads to that share (without it, two trainings on two cores each start two threads per core and both crawl);
  its worker starts with tcmalloc preloaded, as `edgecnn train` runs (edgecnn/malloc.py).
- A task that fails (an exception, or its worker dying) becomes a `task failed` row; the others go on. Rerunning
  the command skips what is finished, as the serial pipeline does.
- Progress: one line per task state change (queued, running, each stage, done, failed) and a summary line.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from edgecnn.errors import EdgecnnError, describe_error

LOCAL = "local"


def placed(config):
    """The config with every folder made absolute under the work folder, so that a task on any node (and the
    driver) means the same files."""
    from edgecnn.runs import runs_root

    workdir = Path(config.workdir or ".").expanduser().resolve()
    if config.workdir and not workdir.is_dir():
        raise EdgecnnError(f"--workdir {config.workdir}: no such folder")

    def under(path):
        return None if path is None else str(path if Path(path).is_absolute() else workdir / path)

    return replace(config, workdir=str(workdir), runs_dir=under(config.runs_dir or runs_root(None)),
                   artifacts_dir=under(config.artifacts_dir), data_dir=under(config.data_dir),
                   store=under(config.store), report_dir=under(config.report_dir))


class _TaskHooks:
    """Inside a task: each stage start becomes an event line for the driver."""

    def __init__(self, model: str, events):
        self.model, self.events = model, events

    def stage(self, model: str, name: str) -> None:
        self.events.put((self.model, name))

    def train_reporter(self):
        return None

    def export_progress(self):
        return None


def chain_task(chain, log_type, model: str, config, threads: int, events) -> tuple[list, list[str], str | None]:
    """Runs in a Ray worker: chain(model, config, log, hooks) -> bundles, as the serial pipeline calls it (passed
    in, so this module does not import the pipeline that imports it). Returns (stage log entries, bundle folders,
    error line or None)."""
    import torch

    os.chdir(config.workdir)
    os.environ.pop("LD_PRELOAD", None)  # tcmalloc is loaded in this worker; what it starts keeps its own allocator
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    events.put((model, "running"))
    log = log_type()
    try:
        bundles = chain(model, config, log, _TaskHooks(model, events))
    except Exception as error:  # noqa: BLE001 - a failed chain is a row of the closing table, not the sweep's end
        return log.entries, [], describe_error(error, 300)
    return log.entries, [str(b) for b in bundles], None


def connect(address: str):
    """ray.init for an address (LOCAL: a fresh instance on this machine); returns the ray module."""
    import logging

    try:
        import ray
    except ImportError:
        raise EdgecnnError("--ray needs Ray: pip install 'ray>=2.9'") from None
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    kwargs = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    hostport = address.removeprefix("ray://")
    if address not in (LOCAL, "auto") and not _listening(hostport):
        raise EdgecnnError(f"could not reach the Ray cluster at {address}: nothing answers there (start one with "
                           "'ray start --head' on that machine, or use --ray local)")
    try:
        if address == LOCAL:
            ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise EdgecnnError(f"could not reach the Ray cluster at {address}: {describe_error(error, 200)} "
                           "(start one with 'ray start --head', or use --ray local)") from None
    return ray


def _listening(hostport: str, timeout: float = 5.0) -> bool:
    """Whether something accepts a TCP connection at HOST:PORT (Ray itself retries an absent head for minutes)."""
    import socket

    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise EdgecnnError(f"--ray {hostport!r}: give local, auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def run_chains(models: list[str], config, log, hooks, chain) -> dict[str, list[Path]]:
    """`chain` (edgecnn.pipeline.model_chain) of every model as a Ray task; each task's stage rows go into `log`,
    a failed task's as a `task` row. Returns model -> bundle folders of the chains that finished."""
    ray = connect(config.ray)
    try:
        from ray.util.queue import Queue

        events = Queue(actor_options={"num_cpus": 0})
        threads = max(1, int(config.cpus_per_task))
        remote = ray.remote(chain_task).options(num_cpus=config.cpus_per_task, num_gpus=config.gpus_per_task,
                                                max_retries=0, runtime_env={"env_vars": _worker_env(threads)})
        pending = {remote.remote(chain, type(log), model, config, threads, events): model for model in models}
        state = {model: "queued" for model in models}
        for model in models:
            hooks.sweep_event(model, "queued", state)
        bundles: dict[str, list[Path]] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            _drain(events, state, hooks)
            for ref in ready:
                model = pending.pop(ref)
                try:
                    entries, folders, error = ray.get(ref)
                except Exception as crash:  # noqa: BLE001 - the worker died (killed, out of memory): still a row
                    entries, folders, error = [], [], describe_error(crash, 300)
                _drain(events, state, hooks)
                log.entries.extend(entries)
                if error:
                    log.add(model, "task", "failed", error)
                    state[model] = "failed"
                else:
                    bundles[model] = [Path(folder) for folder in folders]
                    state[model] = "done"
                hooks.sweep_event(model, state[model], state)
        return bundles
    finally:
        ray.shutdown()


def _worker_env(threads: int) -> dict[str, str]:
    """The environment a task's worker starts with: its thread share, and tcmalloc preloaded as `edgecnn train`
    runs (edgecnn/malloc.py) - an allocator cannot be swapped once a process runs, and under glibc the same
    trainings ran about a third slower."""
    from edgecnn.malloc import preload_env

    env = {"OMP_NUM_THREADS": str(threads)}
    preloaded = preload_env({})
    if preloaded:
        env["LD_PRELOAD"] = preloaded["LD_PRELOAD"]
    return env


def _drain(events, state: dict, hooks) -> None:
    while not events.empty():
        model, what = events.get_nowait()
        state[model] = "running"
        hooks.sweep_event(model, what, state)


def summary(state: dict) -> str:
    counts = {name: sum(1 for value in state.values() if value == name) for name in ("done", "running", "failed",
                                                                                    "queued")}
    return ", ".join(f"{count} {name}" for name, count in counts.items())
