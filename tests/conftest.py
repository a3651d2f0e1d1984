import fcntl
import json
import os
import socket
import subprocess
import time
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


def build_zoo_model(name: str, num_classes: int = 10, in_chans: int = 1, shallow: bool = True) -> torch.nn.Module:
    """A zoo variant in eval mode, seeded. shallow: a ResNet keeps at most two blocks of each stage row (the first,
    with its stride and projection, and one repeat): the same blocks, the same code paths, a quarter of the depth.
    Sweeps over every variant use it; the full-depth graphs are converted where a real run is exported."""
    from dataclasses import replace

    from edgecnn.compress.zoo import get_entry, get_model
    from edgecnn.compress.zoo.builder import build_resnet
    from edgecnn.compress.zoo.spec import ResNetSpec

    torch.manual_seed(0)
    spec = get_entry(name).spec
    if shallow and isinstance(spec, ResNetSpec):
        spec = replace(spec, stages=tuple(tuple(replace(row, n=min(row.n, 2)) for row in rows) for rows in spec.stages))
        return build_resnet(spec, num_classes, in_chans).eval()
    return get_model(name, num_classes=num_classes, in_chans=in_chans).eval()


@pytest.fixture(scope="session")
def zoo_model():
    """build_zoo_model, for the tests that sweep the zoo."""
    return build_zoo_model


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """shared(name, build) -> folder built once per session (see shared_once)."""
    return lambda name, build: shared_once(tmp_path_factory, name, build)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """vgg19-exp8 (depthwise, Fire, grouped pointwise + shuffle; 151k params) trained for about 30 s on generated
    CIFAR-format data: quantization checks need a model that has learned something (a random one predicts one class
    for everything). 8 epochs, not 4: after 4 the margins were thin enough that int8 flipped 7-10 % of the test
    images on AVX-512 machines with one thread (both runtimes); after 8 every int8 file agrees with fp32 there.
    It exports in about a minute; exp13's 500-op graph takes several."""
    def build(root: Path) -> None:
        write_synthetic_cifar(root / "data", 10, train_size=600, test_size=200, seed=5)
        # one torch thread whatever the session's share: float reductions split over threads round differently,
        # and with two threads (pytest -n 0 on 2 cores) this run came out with margins thin enough that onnx int8
        # flipped 6.5 % of the test images; with one (each xdist worker's share) it is the same model every time
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            train(TrainConfig(model="vgg19-exp8", dataset="cifar10", recipe="fast", data_dir=str(root / "data"),
                              runs_dir=str(root / "runs"), name="vgg19-exp8-synthetic", epochs=8, batch_size=32,
                              lr=0.05))
        finally:
            torch.set_num_threads(threads)

    root = shared_once(tmp_path_factory, "trained-run", build)
    run = Run(root / "runs" / "vgg19-exp8-synthetic")
    assert run.result["test_acc"] > 0.7
    return run, str(root / "data")


@pytest.fixture(scope="session")
def exported(trained_run, shared):
    """(export.json, folder, run): the trained run exported to ONNX, TFLite and ncnn, fp32 and int8, once per
    session (ExecuTorch, whose lowering takes minutes, has a fixture of its own in tests/export)."""
    from edgecnn.export.pipeline import ExportOptions, export_checkpoint

    run, data_dir = trained_run
    out = shared("export", lambda folder: export_checkpoint(
        run.checkpoint(), folder, ExportOptions(int8=True, calib_samples=200, formats=("onnx", "tflite", "ncnn")),
        data_dir=data_dir))
    return json.loads((out / "export.json").read_text()), out, run


SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A private OpenSSH server on 127.0.0.1 (own host key, own authorised key): the "device" of the SSH tests.
    config(name, known_hosts) writes an ssh_config with the Host alias `loopdev` for EDGECNN_SSH_CONFIG."""
    d = tmp_path_factory.mktemp("sshd")
    keygen(d / "host_key")
    keygen(d / "client_key")
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
""")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # privilege-separation directory sshd wants as root
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=open(d / "sshd.log", "w"))
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    host_key = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()

    def config(name, known_hosts, target_port=port):
        path = d / f"config-{name}"
        path.write_text(f"""Host loopdev
    HostName 127.0.0.1
    Port {target_port}
    User {user}
    IdentityFile {d / 'client_key'}
    IdentitiesOnly yes
    UserKnownHostsFile {known_hosts}
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking accept-new
""")
        return str(path)

    yield {"dir": d, "port": port, "config": config, "pid": server.pid, "keygen": keygen, "free_port": free_port}
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="session")
def bundle_dir(exported, trained_run, shared):
    """The exported files as a deployment bundle (sample: the whole 200-image test split), once per session."""
    from edgecnn.export.bundle import make_bundle

    out = shared("bundle", lambda folder: make_bundle(exported[1], folder / "bundle", data_dir=trained_run[1]))
    return out / "bundle"


@pytest.fixture(scope="session")
def arm64_python(shared):
    """Path of an emulated aarch64 board's python3 (Debian arm64 userland + aarch64 wheels of numpy, onnxruntime,
    ai-edge-litert and ncnn, under qemu-user as a Cortex-A72), built by scripts/arm64-device.sh once per session
    (about 15 s; needs qemu-user-static, mmdebstrap and PyPI, which .ci/run's setup installs or reaches)."""
    import sys

    script = Path(__file__).parents[1] / "scripts" / "arm64-device.sh"
    env = {**os.environ, "PIP": f"{sys.executable} -m pip"}

    def build(root: Path) -> None:
        done = subprocess.run(["bash", str(script), str(root / "rootfs")], env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"arm64-device.sh failed:\n{done.stderr[-3000:]}"

    folder = shared("arm64-board", build)
    return str(folder / "rootfs" / "python3")


@pytest.fixture(scope="session")
def pipeline_folder(shared):
    """`edgecnn pipeline` driven through interruptions on generated CIFAR data (vgg19-exp8, ONNX fp32 + int8, host,
    one thread), once per session. Three calls into the library, the stage log of each in calls.json:
    1. killed (KeyboardInterrupt) in the second training epoch;
    2. resumes the training, exports, bundles, and is killed as the bench stage starts;
    3. skips train/export/bundle, benches, writes the report.
    Everything it writes (runs, artifacts, results store, report) is under the returned folder."""
    from edgecnn.compress.train import Reporter
    from edgecnn.export.options import ExportOptions
    from edgecnn.pipeline import Hooks, PipelineConfig, run_pipeline

    class KilledInSecondEpoch(Hooks):
        def train_reporter(self):
            class Killer(Reporter):
                first = None

                def batch(self, epoch, step, loss, acc, images_per_s):
                    self.first = epoch if self.first is None else self.first
                    if epoch != self.first:
                        raise KeyboardInterrupt

            return Killer()

    class RecordsResume(Hooks):
        first_epochs = []

        def train_reporter(self):
            first_epochs = self.first_epochs

            class Recorder(Reporter):
                def start(self, run, epochs, steps, first_epoch):
                    first_epochs.append(first_epoch)

            return Recorder()

    class KilledAtBench(RecordsResume):
        def stage(self, model, name):
            if name == "bench":
                raise KeyboardInterrupt

    def build(root: Path) -> None:
        write_synthetic_cifar(root / "data", 10, train_size=600, test_size=200, seed=11)
        config = PipelineConfig(models=("vgg19-exp8",), dataset="cifar10", epochs=3, batch_size=32, lr=0.05,
                                export=ExportOptions(formats=("onnx",), int8=True, calib_samples=100), threads=(1,),
                                bench_runs=20, bench_warmup=3,
                                data_dir=str(root / "data"), runs_dir=str(root / "runs"),
                                artifacts_dir=str(root / "artifacts"), store=str(root / "results" / "bench.sqlite"),
                                report_dir=str(root / "report"), qat_above_pp=None)  # QAT: tests/core/test_pipeline
        calls = []
        resumed = KilledAtBench()
        for hooks in (KilledInSecondEpoch(), resumed, Hooks()):
            stamps = {}
            try:
                log, _, _, errors = run_pipeline(config, hooks)
                calls.append({"entries": log.entries, "errors": errors})
            except KeyboardInterrupt:
                calls.append({"interrupted": True})
            for path in (root / "artifacts").glob("*/export.json"):
                stamps[str(path)] = path.stat().st_mtime_ns
            calls[-1]["export_mtimes"] = stamps
        calls[1]["train_started_after_epoch"] = resumed.first_epochs
        (root / "calls.json").write_text(json.dumps(calls, indent=2))

    return shared("pipeline", build)


#: what a board with one runtime has installed: numpy and that runtime, nothing else (no torch, no edgecnn)
DEVICE_PACKAGES = {"onnxruntime": ("onnxruntime", "onnxruntime-*.dist-info"),
                   "litert": ("ai_edge_litert", "ai_edge_litert-*.dist-info"),
                   "ncnn": ("ncnn", "ncnn.libs", "ncnn-*.dist-info")}


@pytest.fixture(scope="session")
def device_python(shared):
    """device_python(runtime) -> a Python whose site-packages hold only numpy and that runtime ("onnxruntime",
    "litert" or "ncnn"): a venv without pip whose packages are links to this environment's, so it costs nothing to build."""
    import sys
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])

    def make(runtime: str) -> str:
        def build(root: Path) -> None:
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
            target = Path(subprocess.run([str(root / "venv" / "bin" / "python"), "-c",
                                          "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                         capture_output=True, text=True, check=True).stdout.strip())
            for pattern in ("numpy", "numpy.libs", "numpy-*.dist-info", *DEVICE_PACKAGES[runtime]):
                for entry in site.glob(pattern):
                    (target / entry.name).symlink_to(entry)

        return str(shared(f"device-{runtime}", build) / "venv" / "bin" / "python")

    return make
