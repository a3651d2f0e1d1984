"""`edgecnn deploy`: a bundle installed on the loopback SSH device and on the emulated aarch64 board, and the
commands it prints then run there, as a user would type them."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest


#: the deployed bundle: two runtimes and 20 sample images keep the printed commands quick, under emulation too
FILES = ["model.int8.onnx", "model.int8.tflite"]


@pytest.fixture(scope="module")
def small_bundle(exported, trained_run, tmp_path_factory):
    from edgecnn.export.bundle import make_bundle

    return make_bundle(exported[1], tmp_path_factory.mktemp("deploy") / "bundle", sample=20,
                       data_dir=trained_run[1], files=FILES)


def edgecnn(*args, env):
    return subprocess.run([sys.executable, "-m", "edgecnn", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def printed_commands(stdout: str) -> list[str]:
    """The indented command lines under 'run it there', as printed."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run it there"))
    return [line[2:] for line in lines[start + 1:] if line.startswith("  ")]


def run_there(login: list[str], commands: list[str]) -> subprocess.CompletedProcess:
    """The printed lines as one script: through the printed login for an SSH device, else in a local shell."""
    script = "set -e\n" + "\n".join(commands) + "\n"
    return subprocess.run([*login, "sh"] if login else ["sh"], input=script, capture_output=True, text=True,
                          timeout=900)


def check_output(done: subprocess.CompletedProcess, manifest: dict, files: list[str]) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"ok: {len(manifest['files'])} files match manifest.json" in done.stdout
    table = done.stdout[done.stdout.index("top-1 at export"):]
    assert all(f"\n{file} " in table for file in files)  # eval: one row per file this device runs
    predicted = done.stdout.split("rank  class")[1].splitlines()[2]  # predict: the first row under the rule
    assert predicted.split()[0] == "1" and predicted.split()[1] in " ".join(manifest["classes"])
    assert "p50 ms" in done.stdout and "peak MiB" in done.stdout  # bench


def test_deploy_to_the_loopback_ssh_device_then_run_the_printed_commands(sshd, small_bundle, tmp_path):
    bundle_dir = small_bundle
    env = {**os.environ, "EDGECNN_CONFIG_DIR": str(tmp_path / "config"),
           "EDGECNN_SSH_CONFIG": sshd["config"]("ok", sshd["dir"] / "known_hosts")}
    workdir = tmp_path / "on the device"  # a space: every printed path must be quoted
    added = edgecnn("devices", "add", "loop", "--ssh-host", "loopdev", "--python", sys.executable, "--workdir",
                    workdir, "--threads", "1", env=env)
    assert added.returncode == 0, added.stderr
    done = edgecnn("deploy", "--device", "loop", "--bundle", bundle_dir, env=env)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    installed = next(workdir.iterdir())
    assert installed.name.startswith("vgg19-exp8-") and (installed / "manifest.json").read_bytes() == \
        (bundle_dir / "manifest.json").read_bytes()
    commands = printed_commands(done.stdout)
    login = shlex.split(commands[0])
    assert login[0] == "ssh" and login[-1] == "loopdev" and commands[1] == f"cd {shlex.quote(str(installed))}"
    ran = run_there(login, commands[1:])
    files = [a["file"] for a in manifest["artifacts"]]
    assert files == FILES
    check_output(ran, manifest, files)
    as_json = json.loads(edgecnn("deploy", "--device", "loop", "--bundle", bundle_dir, "--json", env=env).stdout)
    assert as_json["path"] == str(installed) and as_json["commands"] == commands[1:] and as_json["runnable"] == files


def test_deploy_to_a_device_without_numpy_says_to_install_it_first(sshd, small_bundle, tmp_path):
    env = {**os.environ, "EDGECNN_CONFIG_DIR": str(tmp_path / "config"),
           "EDGECNN_SSH_CONFIG": sshd["config"]("ok", sshd["dir"] / "known_hosts")}
    edgecnn("devices", "add", "bare", "--ssh-host", "loopdev", "--python", "/usr/bin/python3", "--workdir",
            tmp_path / "w", env=env)
    done = json.loads(edgecnn("deploy", "--device", "bare", "--bundle", small_bundle, "--json", env=env).stdout)
    assert done["runnable"] == [] and done["verified"].startswith("not verified there yet")
    assert done["commands"][1] == "/usr/bin/python3 -m pip install numpy onnxruntime"


def test_deploy_to_the_emulated_arm64_board_then_run_the_printed_commands(arm64_python, small_bundle, tmp_path):
    bundle, files = small_bundle, FILES
    env = {**os.environ, "EDGECNN_CONFIG_DIR": str(tmp_path / "config"),
           "EDGECNN_ARM64_BOARD": str(Path(arm64_python).parent)}
    done = edgecnn("deploy", "--device", "pi4-emulated", "--bundle", bundle, "--workdir", tmp_path / "board", env=env)
    assert done.returncode == 0, done.stderr
    assert "(log in first)" not in done.stdout  # a local emulated board: the commands run in a shell here
    commands = printed_commands(done.stdout)
    assert commands[1].startswith(f"{Path(arm64_python).parent}/boards/cortex-a72/python3 runner.py verify")
    assert commands[-1].endswith("--runs 20 --warmup 3")  # an emulated board runs at a hundredth of a board's speed
    ran = run_there([], commands)
    check_output(ran, json.loads((bundle / "manifest.json").read_text()), files)
    assert "aarch64" in ran.stdout  # the runner's table says where it ran


def test_deploy_to_an_unknown_host_is_one_line(sshd, small_bundle, tmp_path):
    env = {**os.environ, "EDGECNN_CONFIG_DIR": str(tmp_path / "config"),
           "EDGECNN_SSH_CONFIG": sshd["config"]("ok", sshd["dir"] / "known_hosts")}
    edgecnn("devices", "add", "gone", "--ssh-host", "rpi4.invalid", env=env)
    done = edgecnn("deploy", "--device", "gone", "--bundle", small_bundle, env=env)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "add a 'Host rpi4.invalid' entry" in done.stderr
