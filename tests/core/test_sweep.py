"""`edgecnn pipeline --ray`: a sweep of three models on a local Ray cluster started here (two worker CPUs), one of
them made to fail: the other two reach the results store and the report, the closing table holds the failure, and
a rerun trains nothing again."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edgecnn.bench.store import ResultStore
from edgecnn.data import write_synthetic_cifar
from edgecnn.errors import EdgecnnError
from edgecnn.pipeline import PipelineConfig
from edgecnn.sweep import placed, summary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: a cluster of the test's own: without token authentication, whatever ~/.ray holds from earlier local clusters
#: (Ray 2.60 writes a token there on its first local start and then expects it from every later cluster)
RAY_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}

NETS = """
from torch import nn


def small(num_classes, in_chans):
    return nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def wider(num_classes, in_chans):
    return nn.Sequential(nn.Conv2d(in_chans, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))


def broken(num_classes, in_chans):
    raise RuntimeError("this factory is made to fail")
"""


@pytest.fixture
def ray_cluster():
    """A Ray head on 127.0.0.1 with two CPUs (two tasks at a time), stopped afterwards; yields its address."""
    ray = str(Path(sys.executable).parent / "ray")
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    port = free_port()
    env = RAY_ENV
    started = subprocess.run([ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                              "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
                              "--temp-dir", temp, "--disable-usage-stats"],
                             capture_output=True, text=True, timeout=180, env=env)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120, env=env)
        shutil.rmtree(temp, ignore_errors=True)


def sweep(tmp_path: Path, address: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgecnn", "pipeline", "--models", "nets.py:small,nets.py:wider,nets.py:broken",
         "--dataset", "cifar10", "--epochs", "1", "--formats", "onnx", "--no-int8", "--forms", "op-minimal",
         "--threads", "1", "--bench-runs", "5", "--data-dir", "data", "--store", "bench.sqlite", "--out", "report",
         "--no-qat", "--ray", address, "--cpus-per-task", "1"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, env=RAY_ENV)


def test_a_sweep_on_a_ray_cluster_keeps_going_past_a_failed_task(tmp_path, ray_cluster):
    (tmp_path / "nets.py").write_text(NETS)
    write_synthetic_cifar(tmp_path / "data", 10, train_size=200, test_size=60, seed=5)
    first = sweep(tmp_path, ray_cluster)
    assert first.returncode == 1, first.stderr[-3000:]  # one task failed: the sweep says so in its exit status
    closing = first.stdout
    assert "task" in closing and "made to fail" in closing  # the failure is a row of the closing table
    for model in ("small", "wider", "broken"):  # one line per state change, with the live summary
        assert f"nets.py:{model}: queued" in first.stderr and f"nets.py:{model}: running" in first.stderr
    assert "1 failed" in first.stderr and "2 done" in first.stderr
    rows = ResultStore(tmp_path / "bench.sqlite").rows()
    assert {r["model"].rsplit(":", 1)[1] for r in rows} == {"small", "wider"}
    title, body = (tmp_path / "report" / "report.md").read_text().split("\n", 1)
    assert ":broken" in title  # the sweep asked for it
    assert ":small" in body and ":wider" in body and ":broken" not in body
    checkpoints = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/best.pt")}
    assert len(checkpoints) == 2

    again = sweep(tmp_path, ray_cluster)
    assert again.returncode == 1
    assert "trained " not in again.stdout  # the finished runs are reused, the broken one fails again
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/best.pt")} == checkpoints
    assert len(ResultStore(tmp_path / "bench.sqlite").rows()) == len(rows)  # nothing benched twice


def test_a_sweep_places_every_folder_under_its_work_folder(tmp_path):
    config = placed(PipelineConfig(workdir=str(tmp_path), data_dir="data", artifacts_dir="artifacts",
                                   store="results/bench.sqlite", runs_dir=None, ray="local"))
    assert config.runs_dir == str(tmp_path / "runs") and config.artifacts_dir == str(tmp_path / "artifacts")
    assert config.data_dir == str(tmp_path / "data") and config.store == str(tmp_path / "results/bench.sqlite")
    assert config.report_dir == str(tmp_path / "results/report")
    absolute = placed(PipelineConfig(workdir=str(tmp_path), data_dir="/elsewhere/data", ray="local"))
    assert absolute.data_dir == "/elsewhere/data"
    with pytest.raises(EdgecnnError, match="no such folder"):
        placed(PipelineConfig(workdir=str(tmp_path / "missing"), ray="local"))
    assert summary({"a": "done", "b": "running", "c": "queued"}) == "1 done, 1 running, 0 failed, 1 queued"


def test_an_unreachable_cluster_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "edgecnn", "pipeline", "--models", "exp13", "--ray",
                           f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "could not reach the Ray cluster" in done.stderr
    assert json.dumps(done.stderr).count("\\n") <= 2
