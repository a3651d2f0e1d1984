"""The bad-input matrix: every user-facing input of every stage walked through the ways it can be wrong.

Each case builds its broken input here (nothing is a checked-in fixture), runs the command a user would run, and
asserts what a user must see: a non-zero exit status, exactly one line on stderr (`edgecnn: error: ...` or
`runner: error: ...`, never a traceback, never an "internal error"), and no file of the working folder created,
changed or left half-written. The failure kinds (README, "Reliability"): missing, empty, truncated, wrong
type/format, wrong size/shape, hostile text, stale cache, concurrent writer, killed process. Stale caches and
killed processes must heal instead: the next command succeeds and leaves nothing behind.

Commands run in this process (edgecnn.cli.main, as the console script calls it) so that the matrix costs
milliseconds per case; the runner runs as the subprocess it is on a device.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from edgecnn.data import DEBIAN_FASHION_MNIST, read_idx, write_synthetic_cifar
from edgecnn.export import runner as runner_module

KINDS = ("missing", "empty", "truncated", "wrong type", "wrong shape", "hostile text", "stale cache",
         "concurrent writer", "killed process")


# ------------------------------------------------------------------------------------------------ helpers

def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under the roots with its sha256: what a refused command must leave exactly as it was. A folder's
    writer lock (.edgecnn.lock, empty of data) is the one file a refused command may have made."""
    found = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")) if Path(root).exists() else []:
            if path.is_file() and path.name != ".edgecnn.lock":
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def leftovers(root: Path) -> list[str]:
    return [str(p) for p in Path(root).rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name]


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working folder (the command's cwd: runs/, artifacts/, results/ land here) and a run_cli(*args) that runs
    `edgecnn ARGS` in this process, returning (exit status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGECNN_MALLOC", "system")  # no re-exec under tcmalloc inside the test process
    monkeypatch.setenv("EDGECNN_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("EDGECNN_RESULTS", str(tmp_path / "results" / "bench.sqlite"))
    monkeypatch.delenv("EDGECNN_DEBUG", raising=False)
    return tmp_path


def run_cli(capfd, *args):
    from edgecnn.cli import main

    capfd.readouterr()
    argv = sys.argv
    sys.argv = ["edgecnn", *map(str, args)]
    try:
        with pytest.raises(SystemExit) as done:
            main()
    finally:
        sys.argv = argv
    out, err = capfd.readouterr()
    return done.value.code, out, err


def run_runner(folder: Path, *args, python: str = sys.executable):
    result = subprocess.run([python, str(folder / "runner.py"), *map(str, args)], capture_output=True, text=True,
                            timeout=300, cwd=folder)
    return result.returncode, result.stdout, result.stderr


def assert_refused(result, before: dict, roots, message: str, prefix: str = "edgecnn: error: "):
    code, _, err = result
    lines = err.strip().splitlines()
    assert code not in (0, None), err
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix) and "Traceback" not in err and "internal error" not in err, err
    assert message in lines[0], lines[0]
    assert snapshot(*roots) == before, "a refused command changed files"
    for root in roots:
        assert not leftovers(root)


class Case:
    """One cell of the matrix: `build(ctx)` makes the broken input and returns the command's arguments; `message`
    is part of the one line the user must read."""

    def __init__(self, kind: str, build, message: str):
        assert kind in KINDS
        self.kind, self.build, self.message = kind, build, message


def cases(stage: str, table: dict[str, Case]):
    return pytest.mark.parametrize("case", [pytest.param(c, id=f"{stage}:{c.kind}:{name}") for name, c in table.items()])


def damage(path: Path, how: str) -> Path:
    """The file at `path`, broken one way: empty, truncated to half, or garbage of the same length."""
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[:len(data) // 2],
                      "garbage": bytes((b * 7 + 13) % 256 for b in data[:4096])}[how])
    return path


def idx(kind: int, shape: tuple, payload: bytes) -> bytes:
    return bytes([0, 0, kind, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape) + payload


def fashion_folder(folder: Path, train: int = 60, test: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", train), ("t10k", test)):
        images = read_idx(DEBIAN_FASHION_MNIST / f"{name}-images-idx3-ubyte.gz", 3)[:count]
        labels = read_idx(DEBIAN_FASHION_MNIST / f"{name}-labels-idx1-ubyte.gz", 1)[:count]
        (folder / f"{name}-images-idx3-ubyte").write_bytes(idx(8, images.shape, images.tobytes()))
        (folder / f"{name}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(8, labels.shape, labels.tobytes())))
    return folder


def cifar_folder(folder: Path) -> Path:
    write_synthetic_cifar(folder, 10, train_size=100, test_size=20, seed=3)
    return folder


def hold_lock(path: Path) -> subprocess.Popen:
    """Another process holding the writer's lock file at `path` (as a running edgecnn would)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT, 0o644)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
        "print('held', flush=True); time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture
def ctx(work, trained_run, exported, bundle_dir):
    """What the cases build from: the session's trained run, its export and bundle, and a scratch folder."""
    run, data_dir = trained_run
    scratch = work / "inputs"
    scratch.mkdir()
    holders = []
    yield {"work": work, "in": scratch, "run": run.path, "checkpoint": run.checkpoint(), "data": Path(data_dir),
           "export": exported[1], "bundle": bundle_dir, "holders": holders}
    for holder in holders:
        holder.kill()
        holder.wait()


def copy_of(src: Path, dest: Path) -> Path:
    (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dest)
    return dest


# ------------------------------------------------------------------------------------------------ data

DATA = {
    "data-dir missing": Case("missing", lambda c: ["data", "show", "fashion-mnist", "--data-dir", c["in"] / "nope"],
                             "fashion-mnist not found in"),
    "data-dir empty": Case("empty", lambda c: ["data", "show", "fashion-mnist", "--data-dir", c["in"]],
                           "expected train-images-idx3-ubyte"),
    "images file empty": Case("empty", lambda c: ["data", "show", "fashion-mnist", "--data-dir", c["in"] / "f"] if damage(
        fashion_folder(c["in"] / "f") / "train-images-idx3-ubyte", "empty") else None, "is not an IDX file"),
    "images file truncated": Case("truncated", lambda c: ["data", "show", "fashion-mnist", "--data-dir", c["in"] / "f"]
                                  if damage(fashion_folder(c["in"] / "f") / "train-images-idx3-ubyte", "truncated")
                                  else None, "train-images-idx3-ubyte is truncated"),
    "labels gzip truncated": Case("truncated", lambda c: ["data", "show", "fashion-mnist", "--data-dir", c["in"] / "f"]
                                  if damage(fashion_folder(c["in"] / "f") / "t10k-labels-idx1-ubyte.gz", "truncated")
                                  else None, "cannot read"),
    "IDX of floats": Case("wrong type", lambda c: ["data", "show", "fashion-mnist", "--data-dir", c["in"] / "f"] if (
        fashion_folder(c["in"] / "f") / "train-images-idx3-ubyte").write_bytes(idx(0x0D, (2, 28, 28), bytes(2 * 784 * 4)))
        else None, "is an IDX file of 32-bit floats"),
    "images 30x30": Case("wrong shape", lambda c: ["data", "show", "fashion-mnist", "--data-dir", c["in"] / "f"] if (
        fashion_folder(c["in"] / "f") / "train-images-idx3-ubyte").write_bytes(idx(8, (60, 30, 30), bytes(60 * 900)))
        else None, "holds 30x30 images, not 28x28"),
    "labels count differs": Case("wrong shape", lambda c: ["data", "show", "fashion-mnist", "--data-dir", c["in"] / "f"]
                                 if (fashion_folder(c["in"] / "f") / "t10k-labels-idx1-ubyte.gz").write_bytes(
                                     gzip.compress(idx(8, (19,), bytes(19)))) else None, "but"),
    "cifar pickle garbage": Case("wrong type", lambda c: ["data", "show", "cifar10", "--data-dir", c["in"]] if damage(
        cifar_folder(c["in"]) / "cifar-10-batches-py" / "data_batch_2", "garbage") else None,
        "is not in CIFAR's python format"),
    "cifar not Toronto's": Case("wrong type", lambda c: ["data", "show", "cifar10", "--data-dir", c["in"]] if (
        cifar_folder(c["in"]) / "cifar-10-batches-py" / "edgecnn-synthetic.json").unlink() is None else None,
        "pass --no-verify"),
    "cifar rows of 1000 bytes": Case("wrong shape", lambda c: ["data", "show", "cifar10", "--data-dir", c["in"],
                                                               "--no-verify"] if _cifar_rows(c["in"], 1000) else None,
                                     "does not hold uint8 rows of 3x32x32 pixels"),
    "cifar pickle that runs code": Case("hostile text", lambda c: ["data", "show", "cifar10", "--data-dir", c["in"]]
                                        if _hostile_pickle(c["in"]) else None, "which a data file never needs"),
    "dataset name with newline": Case("hostile text", lambda c: ["data", "show", "cifar\n10"], "unknown dataset"),
    "data-dir with newline": Case("hostile text", lambda c: ["data", "show", "fashion-mnist", "--data-dir",
                                                             c["in"] / "a\nb"], "fashion-mnist not found in"),
}


def _cifar_rows(root: Path, width: int) -> bool:
    import pickle

    cifar_folder(root)
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": np.zeros((20, width), np.uint8), "labels": [0] * 20}))
    return True


def _hostile_pickle(root: Path) -> bool:
    cifar_folder(root)
    # a pickle whose loading would call os.system: the protocol-0 opcodes of `os.system('touch pwned')`
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR.")
    return True


def cli_refuses(case, ctx, capfd, *watched: Path) -> None:
    """Build the case's input, run the command and check the refusal left every watched folder as it was."""
    args = case.build(ctx)
    before = snapshot(*watched)
    assert_refused(run_cli(capfd, *args), before, list(watched), case.message)


@cases("data", DATA)
def test_data_inputs(case, ctx, capfd):
    cli_refuses(case, ctx, capfd, ctx["work"])
    assert not (ctx["work"] / "pwned").exists()


# ------------------------------------------------------------------------------------------------ train

def _resume_dir(c, how: str) -> Path:
    run = copy_of(c["run"], c["in"] / "run")
    (run / "result.json").unlink()  # an unfinished run, as a killed training leaves it
    if how == "config":
        (run / "config.json").write_text("{not json")
    elif how == "checkpoint":
        damage(run / "last.pt", "truncated")
    elif how == "foreign":
        (run / "last.pt").write_bytes(json.dumps({"state_dict": {}}).encode())
    return run


TRAIN = {
    "resume folder missing": Case("missing", lambda c: ["train", "--resume", c["in"] / "gone"], "not a run directory"),
    "resume config.json unreadable": Case("truncated", lambda c: ["train", "--resume", _resume_dir(c, "config")],
                                          "cannot read"),
    "resume last.pt truncated": Case("truncated", lambda c: ["train", "--resume", _resume_dir(c, "checkpoint")],
                                     "is not a readable checkpoint"),
    "resume last.pt not a checkpoint": Case("wrong type", lambda c: ["train", "--resume", _resume_dir(c, "foreign")],
                                            "is not a readable checkpoint"),
    "unknown model": Case("wrong type", lambda c: ["train", "--model", "exp99"], "unknown model 'exp99'"),
    "epochs 0": Case("wrong shape", lambda c: ["train", "--model", "exp13", "--epochs", 0], "--epochs"),
    "unknown recipe": Case("wrong type", lambda c: ["train", "--model", "exp13", "--recipe", "turbo"], "recipe"),
    "run name with a path": Case("hostile text", lambda c: ["train", "--model", "vgg19-exp8", "--dataset", "cifar10",
                                                            "--data-dir", c["data"], "--name", "../../escape"],
                                 "must be one folder name"),
    "run folder being written": Case("concurrent writer", lambda c: _locked_resume(c), "being written by another"),
}


def _locked_resume(c) -> list:
    run = _resume_dir(c, "")
    c["holders"].append(hold_lock(run / ".edgecnn.lock"))
    return ["train", "--resume", run]


@cases("train", TRAIN)
def test_train_inputs(case, ctx, capfd):
    cli_refuses(case, ctx, capfd, ctx["work"])
    assert not (ctx["work"].parent / "escape").exists()


def test_a_killed_training_leaves_nothing_the_resume_trips_on(ctx, capfd):
    """killed process: a run killed mid-write (no result.json, an atomic write cut short) resumes and finishes."""
    run = _resume_dir(ctx, "")
    (run / ".last.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    code, _, err = run_cli(capfd, "train", "--resume", run)
    assert code == 0, err
    assert (run / "result.json").is_file() and not leftovers(run)


# ------------------------------------------------------------------------------------------------ compress

def _checkpoint(c, how: str) -> Path:
    path = c["in"] / "model.pt"
    if how == "foreign":  # a torch file that is not an edgecnn checkpoint
        import torch

        torch.save({"weights": torch.zeros(3)}, path)
    elif how == "json":
        path.write_text('{"format": "edgecnn-checkpoint/1"}')
    else:
        damage(copy_of(c["checkpoint"], path), how)
    return path


def _damaged_payload(c) -> Path:
    import torch

    payload = torch.load(c["checkpoint"], weights_only=True)
    del payload["state_dict"]
    path = c["in"] / "model.pt"
    torch.save(payload, path)
    return path


COMPRESS = {
    "checkpoint missing": Case("missing", lambda c: ["compress", "prune", "--checkpoint", c["in"] / "no.pt"],
                               "checkpoint not found"),
    "checkpoint empty": Case("empty", lambda c: ["compress", "prune", "--checkpoint", _checkpoint(c, "empty")],
                             "is not a readable checkpoint"),
    "checkpoint truncated": Case("truncated", lambda c: ["compress", "prune", "--checkpoint",
                                                         _checkpoint(c, "truncated")], "is not a readable checkpoint"),
    "checkpoint of another program": Case("wrong type", lambda c: ["compress", "prune", "--checkpoint",
                                                                   _checkpoint(c, "foreign")], "not an edgecnn checkpoint"),
    "checkpoint is JSON": Case("wrong type", lambda c: ["compress", "qat", "--checkpoint", _checkpoint(c, "json")],
                               "is not a readable checkpoint"),
    "checkpoint without weights": Case("wrong shape", lambda c: ["compress", "prune", "--checkpoint",
                                                                 _damaged_payload(c)], "'state_dict' is missing"),
    "amount above 1": Case("wrong shape", lambda c: ["compress", "prune", "--run", c["run"], "--amount", 2], "--amount"),
    "depth on a VGG": Case("wrong type", lambda c: ["compress", "depth", "--run", c["run"], "--blocks", 1],
                           "has no residual block"),
    "run name with a path": Case("hostile text", lambda c: ["compress", "qat", "--run", c["run"], "--name", "a/../../b",
                                                            "--runs-dir", c["in"] / "runs"], "must be one folder name"),
}


@cases("compress", COMPRESS)
def test_compress_inputs(case, ctx, capfd):
    cli_refuses(case, ctx, capfd, ctx["work"], ctx["run"])


# ------------------------------------------------------------------------------------------------ export

def _trained_on_other_data(c) -> list:
    other = c["in"] / "other"
    write_synthetic_cifar(other, 10, train_size=600, test_size=200, seed=99)  # same sizes, other images
    return ["export", "--run", c["run"], "--data-dir", other, "--formats", "onnx", "--out", c["work"] / "out"]


EXPORT = {
    "checkpoint missing": Case("missing", lambda c: ["export", "--checkpoint", c["in"] / "no.pt", "--out", c["in"] / "o"],
                               "checkpoint not found"),
    "checkpoint truncated": Case("truncated", lambda c: ["export", "--checkpoint", _checkpoint(c, "truncated"), "--out",
                                                         c["in"] / "o"], "is not a readable checkpoint"),
    "checkpoint empty": Case("empty", lambda c: ["export", "--checkpoint", _checkpoint(c, "empty")],
                             "is not a readable checkpoint"),
    "unknown format": Case("wrong type", lambda c: ["export", "--run", c["run"], "--formats", "onnx,coreml"],
                           "unknown format coreml"),
    "calibration of 0 images": Case("wrong shape", lambda c: ["export", "--run", c["run"], "--int8", "--calib-samples", 0],
                                    "--calib-samples"),
    "out is a file": Case("wrong type", lambda c: ["export", "--run", c["run"], "--formats", "onnx", "--out",
                                                   _a_file(c["work"] / "taken")], "is a file"),
    "other data than the run's": Case("wrong shape", _trained_on_other_data, "differs"),
    "out folder being written": Case("concurrent writer", lambda c: _locked_export(c), "being written by another"),
    "out path with newline": Case("hostile text", lambda c: ["export", "--checkpoint", c["in"] / "x\ny.pt"],
                                  "checkpoint not found"),
}


def _a_file(path: Path) -> Path:
    path.write_text("not a folder")
    return path


def _locked_export(c) -> list:
    c["holders"].append(hold_lock(c["work"] / "out" / ".edgecnn.lock"))
    return ["export", "--run", c["run"], "--formats", "onnx", "--out", c["work"] / "out"]


@cases("export", EXPORT)
def test_export_inputs(case, ctx, capfd):
    cli_refuses(case, ctx, capfd, ctx["work"], ctx["run"])


def test_a_killed_export_is_finished_by_the_next_one(ctx):
    """kill -9 in the middle of an export, with an atomic write cut short: the next export cleans up and
    finishes, and its files verify."""
    out = ctx["work"] / "out"
    args = [sys.executable, "-m", "edgecnn", "export", "--run", ctx["run"], "--formats", "onnx", "--int8",
            "--calib-samples", 50, "--out", out, "--no-bundle"]
    env = {**os.environ, "EDGECNN_MALLOC": "system"}
    killed = subprocess.Popen(list(map(str, args)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 300
    while not (out / "export.json").is_file() and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    (out / ".model.int8.onnx.k1ll3d.tmp").write_bytes(b"half a file")  # what a kill inside atomic_write leaves
    again = subprocess.run(list(map(str, args)), capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert not leftovers(out)
    from edgecnn.export.record import ExportRecord

    record = ExportRecord.read(out)
    assert [a.name for a in record.artifacts] == ["pytorch-fp32", "onnx-fp32", "onnx-int8"]
    assert all(a.ok and hashlib.sha256((out / a.file).read_bytes()).hexdigest() == a.sha256 for a in record.files())


# ------------------------------------------------------------------------------------------------ bundle

def _export_copy(c, change) -> Path:
    folder = copy_of(c["export"], c["in"] / "export")
    shutil.rmtree(folder / "bundle", ignore_errors=True)
    change(folder)
    return folder


def _edit_json(name: str, edit):
    """A change that loads a folder's JSON file, edits it in place and writes it back."""
    def change(folder: Path) -> None:
        document = json.loads((folder / name).read_text())
        edit(document)
        (folder / name).write_text(json.dumps(document))
    return change


def _edit_record(edit):
    return _edit_json("export.json", edit)


BUNDLE = {
    "export folder missing": Case("missing", lambda c: ["bundle", "--export", c["in"] / "none"], "holds no export.json"),
    "export.json empty": Case("empty", lambda c: ["bundle", "--export", _export_copy(
        c, lambda f: damage(f / "export.json", "empty"))], "is not readable JSON"),
    "export.json truncated": Case("truncated", lambda c: ["bundle", "--export", _export_copy(
        c, lambda f: damage(f / "export.json", "truncated"))], "is not readable JSON"),
    "export.json is a list": Case("wrong type", lambda c: ["bundle", "--export", _export_copy(
        c, lambda f: (f / "export.json").write_text("[]"))], "is not an edgecnn export record"),
    "export.json without artifacts": Case("wrong shape", lambda c: ["bundle", "--export", _export_copy(
        c, _edit_record(lambda r: r.pop("artifacts")))], "'artifacts' is missing or malformed"),
    "artifact rows malformed": Case("wrong shape", lambda c: ["bundle", "--export", _export_copy(
        c, _edit_record(lambda r: r["artifacts"].append({"name": 3})))], "'artifacts' is missing or malformed"),
    "model file changed": Case("truncated", lambda c: ["bundle", "--export", _export_copy(
        c, lambda f: damage(f / "model.int8.onnx", "truncated"))], "changed since export"),
    "sample of 0 images": Case("wrong shape", lambda c: ["bundle", "--export", c["export"], "--sample", 0], "--sample"),
    "record naming a path": Case("hostile text", lambda c: ["bundle", "--export", _export_copy(
        c, _edit_record(lambda r: r["artifacts"][1].update(file="../../../etc/passwd")))],
        "'artifacts' is missing or malformed"),
}


@cases("bundle", BUNDLE)
def test_bundle_inputs(case, ctx, capfd):
    cli_refuses(case, ctx, capfd, ctx["work"], ctx["export"])


# ------------------------------------------------------------------------------------------------ runner

def _bundle_copy(c, change=None) -> Path:
    folder = copy_of(c["bundle"], c["in"] / "bundle")
    if change:
        change(folder)
    return folder


def _manifest(edit):
    return _edit_json("manifest.json", edit)


def _zip(members: dict) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _ncnn_file(c) -> bytes:
    """An ncnn file of a small convnet (the bundle's own formats do not include ncnn)."""
    import torch

    from edgecnn.export.ncnn_format import export_fp32

    path = c["in"] / "small.ncnn"
    if not path.exists():
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 10))
        export_fp32(model.eval(), path, 1)
    return path.read_bytes()


def _bare(c, name: str, content: bytes) -> Path:
    path = c["in"] / name
    path.write_bytes(content)
    return path


RUNNER = {
    # a bare model file, outside any bundle (--bundle names a plain folder), as edgecnn's host harness times it
    "model file missing": Case("missing", lambda c: (c["bundle"], ["--bundle", c["in"], "bench", c["in"] / "no.onnx"]),
                               "model file not found"),
    "empty .onnx": Case("empty", lambda c: (c["bundle"], ["--bundle", c["in"], "bench", _bare(c, "m.onnx", b"")]),
                        "is empty"),
    "truncated .onnx": Case("truncated", lambda c: (c["bundle"], ["--bundle", c["in"], "bench", _bare(
        c, "m.onnx", (c["bundle"] / "model.fp32.onnx").read_bytes()[:3000])]), "cannot be loaded by onnxruntime"),
    "truncated .tflite": Case("truncated", lambda c: (c["bundle"], ["--bundle", c["in"], "bench", _bare(
        c, "m.tflite", (c["bundle"] / "model.fp32.tflite").read_bytes()[:3000])]), "cannot be loaded by litert"),
    "ONNX bytes named .tflite": Case("wrong type", lambda c: (c["bundle"], ["--bundle", c["in"], "bench", _bare(
        c, "m.tflite", (c["bundle"] / "model.fp32.onnx").read_bytes())]), "cannot be loaded by litert"),
    "truncated .ncnn": Case("truncated", lambda c: (c["bundle"], ["--bundle", c["in"], "bench", _bare(
        c, "m.ncnn", _ncnn_file(c)[:3000])]), "is not an ncnn file of edgecnn's"),
    "ncnn zip of another graph": Case("wrong type", lambda c: (c["bundle"], ["--bundle", c["in"], "bench", _bare(
        c, "m.ncnn", _zip({"model.param": "7767517\nnot a graph\n", "model.bin": b""}))]), "an ncnn graph with 0 inputs"),
    "ONNX bytes named .pte": Case("wrong type", lambda c: (c["bundle"], ["--bundle", c["in"], "bench", _bare(
        c, "m.pte", (c["bundle"] / "model.fp32.onnx").read_bytes())]), "cannot be loaded by executorch"),
    "unknown suffix": Case("wrong type", lambda c: (c["bundle"], ["--bundle", c["in"], "bench", _bare(c, "m.pt", b"x")]),
                           "no runtime for .pt"),
    "runs 0": Case("wrong shape", lambda c: (c["bundle"], ["bench", "--runs", 0]), "below 1"),
    "runs -3": Case("wrong shape", lambda c: (c["bundle"], ["bench", "--runs", -3]), "below 1"),
    "batch 0": Case("wrong shape", lambda c: (c["bundle"], ["bench", "--batch", 0]), "below 1"),
    "threads 0": Case("wrong shape", lambda c: (c["bundle"], ["eval", "--threads", 0]), "below 1"),
    "threads not a number": Case("wrong type", lambda c: (c["bundle"], ["bench", "--threads", "two"]),
                                 "is not a whole number"),
    "manifest missing": Case("missing", lambda c: (_bundle_copy(c, lambda f: (f / "manifest.json").unlink()), ["verify"]),
                             "is not a bundle"),
    "manifest truncated": Case("truncated", lambda c: (_bundle_copy(c, lambda f: damage(f / "manifest.json", "truncated")),
                                                       ["eval"]), "is not valid JSON"),
    "manifest without files": Case("wrong shape", lambda c: (_bundle_copy(c, _manifest(lambda m: m.pop("files"))),
                                                             ["eval"]), "lacks its file list"),
    "artifact sha256 edited": Case("wrong shape", lambda c: (_bundle_copy(c, _manifest(
        lambda m: m["artifacts"][0].update(sha256="0" * 64))), ["eval"]), "disagrees with itself"),
    "model file changed": Case("truncated", lambda c: (_bundle_copy(c, lambda f: damage(f / "model.fp32.tflite",
                                                                                       "truncated")), ["eval"]),
                               "does not match its sha256"),
    "manifest naming a path": Case("hostile text", lambda c: (_bundle_copy(c, _manifest(
        lambda m: m["files"].update({"../../x": "0" * 64}))), ["verify"]), "not a file of the bundle folder"),
    "image missing": Case("missing", lambda c: (c["bundle"], ["predict", c["in"] / "none.npy"]), "image not found"),
    "image garbage": Case("wrong type", lambda c: (c["bundle"], ["predict", _bare(c, "x.pgm", b"P5\n32 32\n255\n\x01")]),
                          "is truncated"),
    "image of the wrong kind": Case("wrong shape", lambda c: (c["bundle"], ["predict", _npy(c, np.zeros((7, 9, 4), np.uint8))]),
                                    "expected a uint8 image"),  # 4 channels; other sizes are fitted
    "model not in the bundle": Case("hostile text", lambda c: (c["bundle"], ["eval", "--model", "../../etc/passwd"]),
                                    "is not a model file of this bundle"),
}


def _npy(c, array) -> Path:
    np.save(c["in"] / "image.npy", array)
    return c["in"] / "image.npy"


@cases("runner", RUNNER)
def test_runner_inputs(case, ctx):
    folder, args = case.build(ctx)
    before = snapshot(ctx["work"], ctx["bundle"])
    assert_refused(run_runner(folder, *args), before, [ctx["work"], ctx["bundle"]], case.message,
                   prefix="runner: error: ")


# ------------------------------------------------------------------------------------------------ bench

def _archive(c, members: list[tuple[str, bytes]]) -> Path:
    path = c["in"] / "bundle.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


BENCH = {
    "bundle missing": Case("missing", lambda c: ["bench", "--bundle", c["in"] / "none"], "bundle not found"),
    "archive empty": Case("empty", lambda c: ["bench", "--bundle", _bare(c, "b.tar.gz", b"")], "not a readable .tar.gz"),
    "archive truncated": Case("truncated", lambda c: ["bench", "--bundle", _bare(
        c, "b.tar.gz", (c["bundle"].with_name("bundle.tar.gz")).read_bytes()[:5000])], "not a readable .tar.gz"),
    "not an archive": Case("wrong type", lambda c: ["bench", "--bundle", _bare(c, "b.zip", b"PK")],
                           "neither a bundle folder nor a .tar.gz"),
    "archive with a path outside": Case("hostile text", lambda c: ["bench", "--bundle", _archive(
        c, [("b/../../escape", b"x")])], "refusing to extract"),
    "archive without a manifest": Case("wrong shape", lambda c: ["bench", "--bundle", _archive(c, [("b/runner.py", b"")])],
                                       "is not a bundle"),
    "unknown device": Case("wrong type", lambda c: ["bench", "--bundle", c["bundle"], "--device", "rpi9"],
                           "unknown device 'rpi9'"),
    "threads 0": Case("wrong shape", lambda c: ["bench", "--bundle", c["bundle"], "--threads", "1,0"],
                      "positive integers"),
    "precision int4": Case("wrong type", lambda c: ["bench", "--bundle", c["bundle"], "--precision", "int4"],
                           "unknown precision"),
    "device name with a newline": Case("hostile text", lambda c: ["bench", "--bundle", c["bundle"], "--device", "a\nb"],
                                       "unknown device"),
    "no bundle anywhere": Case("missing", lambda c: ["bench", "--exports-root", c["in"]], "no bundle under"),
}


@cases("bench", BENCH)
def test_bench_inputs(case, ctx, capfd):
    cli_refuses(case, ctx, capfd, ctx["work"], ctx["bundle"])
    assert not (ctx["work"].parent / "escape").exists()


@pytest.mark.parametrize("damage_kind", ["empty folder", "half unpacked", "file changed"])
def test_a_stale_bundle_cache_is_unpacked_again(ctx, capfd, damage_kind):
    """stale cache: what a killed unpacking (or a hand) left in cache/bundles/<archive hash> is rebuilt."""
    from edgecnn.io import cache_dir

    archive = ctx["bundle"].with_name("bundle.tar.gz")
    target = cache_dir() / "bundles" / hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    shutil.rmtree(target, ignore_errors=True)
    if damage_kind == "empty folder":
        target.mkdir(parents=True)
    else:
        copy_of(ctx["bundle"], target / "bundle")
        victim = target / "bundle" / ("runner.py" if damage_kind == "half unpacked" else "model.fp32.onnx")
        victim.unlink() if damage_kind == "half unpacked" else damage(victim, "truncated")
    code, out, err = run_cli(capfd, "bench", "--bundle", archive, "--formats", "onnx", "--precision", "fp32",
                             "--threads", 1, "--runs", 3, "--warmup", 1, "--sample", 20, "--no-reference", "--json")
    assert code == 0, err
    assert [r["status"] for r in json.loads(out)["rows"]] == ["ok"]
    assert not leftovers(cache_dir() / "bundles")


def test_one_unloadable_file_does_not_stop_the_others(ctx, capfd):
    bundle = _bundle_copy(ctx)
    damage(bundle / "model.int8.onnx", "truncated")  # loads nowhere; its sha256 is made to match again
    manifest = json.loads((bundle / "manifest.json").read_text())
    digest = hashlib.sha256((bundle / "model.int8.onnx").read_bytes()).hexdigest()
    manifest["files"]["model.int8.onnx"] = digest
    next(a for a in manifest["artifacts"] if a["file"] == "model.int8.onnx")["sha256"] = digest
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = run_cli(capfd, "bench", "--bundle", bundle, "--formats", "onnx", "--threads", 1, "--runs", 3,
                             "--warmup", 1, "--sample", 20, "--no-reference", "--json")
    rows = {r["file"]: r for r in json.loads(out)["rows"]}
    assert code == 1 and rows["model.fp32.onnx"]["status"] == "ok" and rows["model.fp32.onnx"]["p50_ms"] > 0
    assert rows["model.int8.onnx"]["status"] == "failed"
    assert "cannot be loaded by onnxruntime" in rows["model.int8.onnx"]["error"]
    assert err.strip().splitlines()[-1].startswith("edgecnn: error: device host: model.int8.onnx:")


def test_every_measured_row_survives_a_store_locked_longer_than_the_wait(ctx, capfd, monkeypatch):
    """A results store held by another process past the wait: every row goes to the side file, the command
    says so in one line, and the next write merges them all (none lost, none twice)."""
    from edgecnn.bench.store import ResultStore

    store = ctx["work"] / "results" / "bench.sqlite"
    ResultStore(store).add({"session": "earlier", "device": "host", "file": "x"})
    monkeypatch.setenv("EDGECNN_STORE_WAIT", "0.5")
    locker = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, time\n"
        f"db = sqlite3.connect({str(store)!r}, isolation_level=None); db.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True); time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    ctx["holders"].append(locker)
    assert locker.stdout.readline().strip() == "locked"
    code, out, err = run_cli(capfd, "bench", "--bundle", ctx["bundle"], "--threads", 1, "--runs", 3, "--warmup", 1,
                             "--sample", 20, "--no-reference", "--json", "--formats", "onnx,tflite")
    assert code == 0, err
    measured = json.loads(out)["rows"]
    assert len(measured) == 4 and err.strip().splitlines()[-1].startswith("edgecnn: warning: results store")
    assert ".pending.jsonl" in err
    locker.kill()
    locker.wait()
    reopened = ResultStore(store)
    assert {r["row_id"] for r in reopened.rows()} >= {r["row_id"] for r in measured}  # readable before the merge
    reopened.add({"session": "later", "device": "host", "file": "y"})  # the next write merges the side file
    rows = reopened.rows()
    assert not reopened.pending.exists()
    assert sorted(r["session"] for r in rows).count(json.loads(out)["session"]) == 4 and len(rows) == 6


# ------------------------------------------------------------------------------------------------ devices

def _profile(c, text: str) -> list:
    folder = c["work"] / "config" / "devices"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "board.toml").write_text(text)
    return ["devices", "show", "board"]


DEVICES = {
    "profile missing": Case("missing", lambda c: ["devices", "show", "nosuch"], "unknown device 'nosuch'"),
    "profile empty": Case("empty", lambda c: _profile(c, ""), "transport must be one of"),
    "profile truncated": Case("truncated", lambda c: _profile(c, 'transport = "ssh"\nssh_host = "pi'),
                              "is not readable TOML"),
    "profile field of the wrong kind": Case("wrong type", lambda c: _profile(c, 'transport = "ssh"\nssh_host = 5\n'),
                                            "ssh_host must be a string"),
    "threads of the wrong kind": Case("wrong shape", lambda c: _profile(c, 'transport = "ssh"\nssh_host = "p"\n'
                                                                           'threads = [0]\n'), "positive integers"),
    "ssh host that is an option": Case("hostile text", lambda c: ["devices", "add", "evil", "--ssh-host",
                                                                  "-oProxyCommand=touch pwned"], "is not a host name"),
    "device name with a path": Case("hostile text", lambda c: ["devices", "add", "../../x", "--ssh-host", "pi"],
                                    "use lower-case letters"),
    "threads not numbers": Case("wrong type", lambda c: ["devices", "add", "pi", "--ssh-host", "pi", "--threads", "a"],
                                "comma list of integers"),
}


@cases("devices", DEVICES)
def test_devices_inputs(case, ctx, capfd):
    cli_refuses(case, ctx, capfd, ctx["work"])
    assert not (ctx["work"] / "pwned").exists()


# ------------------------------------------------------------------------------------------------ report

REPORT = {
    "store missing": Case("missing", lambda c: ["report", "--store", c["in"] / "none.sqlite"], "results store not found"),
    "store not SQLite": Case("wrong type", lambda c: ["report", "--runs-dir", c["in"], "--store",
                                                      _bare(c, "s.sqlite", b"not a database at all" * 50)],
                             "cannot be read"),
    "store empty and no runs": Case("empty", lambda c: ["report", "--runs-dir", c["in"], "--store",
                                                        _bare(c, "s.sqlite", b"")], "nothing to report"),
    "unknown model": Case("wrong type", lambda c: ["report", "--models", "exp99"], "unknown model 'exp99'"),
    "store truncated": Case("truncated", lambda c: ["report", "--runs-dir", c["in"], "--store", _bare(
        c, "s.sqlite", _sqlite_bytes(c)[:3000])], "cannot be read"),
    "models with a newline": Case("hostile text", lambda c: ["report", "--models", "exp13\n;rm -rf x"], "unknown model"),
    "dataset misspelt": Case("wrong type", lambda c: ["report", "--dataset", "cifar-10"], "unknown dataset"),
    "out is a file": Case("wrong type", lambda c: ["report", "--runs-dir", c["run"].parent, "--out",
                                                   _a_file(c["work"] / "taken")], "is a file"),
}


def _sqlite_bytes(c) -> bytes:
    from edgecnn.bench.store import ResultStore

    store = ResultStore(c["in"] / "full.sqlite")
    for i in range(50):
        store.add({"session": "s", "device": "host", "file": f"f{i}", "versions": {"numpy": "x" * 200}})
    data = (c["in"] / "full.sqlite").read_bytes()
    (c["in"] / "full.sqlite").unlink()
    return data


@cases("report", REPORT)
def test_report_inputs(case, ctx, capfd):
    cli_refuses(case, ctx, capfd, ctx["work"])


def test_the_matrix_covers_every_kind():
    """The README's reliability table is this matrix: every kind appears, and every stage has at least five."""
    tables = {"data": DATA, "train": TRAIN, "compress": COMPRESS, "export": EXPORT, "bundle": BUNDLE, "runner": RUNNER,
              "bench": BENCH, "devices": DEVICES, "report": REPORT}
    kinds = {case.kind for table in tables.values() for case in table.values()}
    assert kinds | {"stale cache", "killed process"} == set(KINDS)
    assert all(len(table) >= 5 for table in tables.values())
    assert runner_module.RUNTIME_MODULES  # the runner's runtimes are what the runner cases load
