"""`edgecnn train / eval / runs / data` from the command line: a real tiny run, and one-line errors."""

import json
import subprocess
import sys

import pytest


def edgecnn(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "edgecnn", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    made = edgecnn("data", "synthetic-cifar", root / "data", "--train-size", 300, "--test-size", 100)
    assert made.returncode == 0, made.stderr
    return root


def test_train_eval_runs_end_to_end(workspace):
    runs = workspace / "runs"
    trained = edgecnn("train", "--model", "exp13", "--dataset", "cifar10", "--data-dir", workspace / "data",
                      "--epochs", 2, "--batch-size", 30, "--runs-dir", runs, "--name", "tiny")
    assert trained.returncode == 0, trained.stderr
    assert "epoch 2:" in trained.stderr and "test accuracy" in trained.stdout  # plain log lines when piped
    evaluated = edgecnn("eval", "--model", "exp13", "--dataset", "cifar10", "--data-dir", workspace / "data",
                        "--runs-dir", runs, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    result = json.loads((runs / "tiny" / "result.json").read_text())
    assert report["images"] == 100 and report["accuracy"] == pytest.approx(result["test_acc"])
    assert json.loads((runs / "tiny" / "config.json").read_text())["allocator"] == "tcmalloc"  # edgecnn/malloc.py
    listed = json.loads(edgecnn("runs", "--runs-dir", runs, "--json").stdout)
    assert [(r["run"], r["status"], r["epochs_done"]) for r in listed] == [("tiny", "finished", 2)]
    val = edgecnn("eval", "--run", runs / "tiny", "--split", "val", "--data-dir", workspace / "data")
    assert val.returncode == 0 and "val: accuracy" in val.stdout


@pytest.mark.parametrize("args,message", [
    (["train", "-m", "exp13", "-d", "mnist"], "unknown dataset 'mnist'"),
    (["train", "-m", "exp99"], "unknown model 'exp99'; did you mean exp9"),
    (["train", "-m", "exp13", "--recipe", "paper3"], "unknown recipe 'paper3'"),
    (["train", "-m", "exp13", "-d", "cifar10", "--data-dir", "{empty}"], "cifar10 not found in"),
    (["train"], "--model is required"),
    (["train", "--resume", "{empty}"], "not a run directory"),
    (["eval", "--checkpoint", "{empty}/missing.pt"], "checkpoint not found"),
    (["eval", "-m", "exp13", "-d", "cifar10", "--runs-dir", "{empty}"], "no finished run of resnet101-exp13"),
    (["eval"], "say which model"),
    (["eval", "--run", "{empty}", "--split", "dev"], "not a run directory"),
])
def test_user_errors_are_one_line(tmp_path, args, message):
    result = edgecnn(*[a.format(empty=tmp_path) for a in args])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_corrupt_checkpoint_through_the_cli(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"\x00" * 100)
    result = edgecnn("eval", "--checkpoint", tmp_path / "best.pt")
    assert result.returncode == 2 and "not a readable checkpoint" in result.stderr
