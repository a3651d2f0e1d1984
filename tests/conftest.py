import fcntl
import json
import os
from pathlib import Path

import pytest
import torch

from edgecnn.compress.train import TrainConfig, train
from edgecnn.data import write_synthetic_cifar
from edgecnn.runs import Run


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker gets its share of the cores; torch's default (one thread per core in every worker)
    # oversubscribes and slows everything several-fold. Subprocesses inherit the same share.
    _share = str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    os.environ["OMP_NUM_THREADS"] = _share
    torch.set_num_threads(int(_share))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never read or write the user's ~/.cache/edgecnn from tests (one shared cache per test session)."""
    monkeypatch.setenv("EDGECNN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "edgecnn-cache"))


def shared_once(tmp_path_factory, name: str, build) -> Path:
    """Build a folder once per test session, even under xdist: the first worker builds it under a lock in the
    directory all workers share, the others wait and reuse it (xdist's own grouping of tests does not hold
    with pytest 9). `build(folder)` fills the folder; it must only be read afterwards."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            folder.mkdir(exist_ok=True)
            build(folder)
            done.write_text(json.dumps({"built_by": os.environ.get("PYTEST_XDIST_WORKER", "main")}))
    return folder


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """shared(name, build) -> folder built once per session (see shared_once)."""
    return lambda name, build: shared_once(tmp_path_factory, name, build)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """vgg19-exp8 (depthwise, Fire, grouped pointwise + shuffle; 151k params) trained for about 15 s on generated
    CIFAR-format data: quantization checks need a model that has learned something (a random one predicts one class
    for everything). It exports in about a minute; exp13's 500-op graph takes several."""
    def build(root: Path) -> None:
        write_synthetic_cifar(root / "data", 10, train_size=600, test_size=200, seed=5)
        train(TrainConfig(model="vgg19-exp8", dataset="cifar10", recipe="fast", data_dir=str(root / "data"),
                          runs_dir=str(root / "runs"), name="vgg19-exp8-synthetic", epochs=4, batch_size=32, lr=0.05))

    root = shared_once(tmp_path_factory, "trained-run", build)
    run = Run(root / "runs" / "vgg19-exp8-synthetic")
    assert run.result["test_acc"] > 0.7
    return run, str(root / "data")


@pytest.fixture(scope="session")
def exported(trained_run, shared):
    """(export.json, folder, run): the trained run exported to all four files, once per session."""
    from edgecnn.export.pipeline import ExportOptions, export_checkpoint

    run, data_dir = trained_run
    out = shared("export", lambda folder: export_checkpoint(
        run.checkpoint(), folder, ExportOptions(int8=True, calib_samples=200), data_dir=data_dir))
    return json.loads((out / "export.json").read_text()), out, run
