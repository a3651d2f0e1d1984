"""`edgecnn bench` end to end: the host, a real OpenSSH device on 127.0.0.1, an emulated aarch64 board behind it,
and the faults a user meets (unknown device, unreachable host, missing runtime, tampered or hostile bundle, a
connection killed mid-run). Timings are only checked for being timings; emulated ones are never compared."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from edgecnn.bench.store import ResultStore


@pytest.fixture
def env(sshd, tmp_path):
    """Environment for the edgecnn command: its own device-profile folder, the loopback ssh_config, a store."""
    return {**os.environ, "EDGECNN_CONFIG_DIR": str(tmp_path / "config"),
            "EDGECNN_SSH_CONFIG": sshd["config"]("ok", sshd["dir"] / "known_hosts"),
            "EDGECNN_RESULTS": str(tmp_path / "bench.sqlite")}


def edgecnn(env, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "edgecnn", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def add_device(env, name, python, workdir, threads="1"):
    added = edgecnn(env, "devices", "add", name, "--ssh-host", "loopdev", "--python", python, "--workdir", workdir,
                    "--threads", threads)
    assert added.returncode == 0, added.stderr


def one_line_error(result):
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    return lines[-1]


def test_host_bench_covers_every_file_and_the_pytorch_reference(env, bundle_dir, exported, tmp_path):
    result = edgecnn(env, "bench", "--bundle", bundle_dir, "--threads", "1,2", "--runs", 20, "--warmup", 2,
                     "--checkpoint", exported[2].checkpoint(), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {(r["file"], r["threads"]): r for r in report["rows"]}
    files = ["model.fp32.onnx", "model.int8.onnx", "model.fp32.tflite", "model.int8.tflite", "model.fp32.ncnn",
             "model.int8.ncnn", "pytorch-eager"]
    assert set(rows) == {(f, t) for f in files for t in (1, 2)}
    exported_acc = {a["file"]: a["accuracy"] for a in exported[0]["artifacts"] if a["file"]}
    for (file, threads), row in rows.items():
        assert row["device"] == "host" and row["arch"] == os.uname().machine and row["runs"] == 20
        assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        # peak memory is the runner process's own, not inherited from the parent that started it
        assert 10 < row["peak_rss_mib"] < (1500 if file == "pytorch-eager" else 400)
        if file != "pytorch-eager":
            assert row["accuracy"] == pytest.approx(exported_acc[file], abs=1e-12)  # sample = whole test split
    reference = {a["name"]: a["accuracy"] for a in exported[0]["artifacts"]}["pytorch-fp32"]
    assert rows[("pytorch-eager", 1)]["accuracy"] == pytest.approx(reference, abs=1e-12)
    stored = ResultStore(env["EDGECNN_RESULTS"]).rows(report["session"])
    assert len(stored) == 14 and {r["device"] for r in stored} == {"host"}
    assert all(len(r["predictions"]) == 200 and r["versions"] for r in stored)


def test_loopback_ssh_device_matches_the_host(env, bundle_dir, tmp_path):
    add_device(env, "loop", sys.executable, str(tmp_path / "device-work"))
    result = edgecnn(env, "bench", "--bundle", bundle_dir, "--device", "host,loop", "--formats", "onnx,tflite",
                     "--runs", 10, "--warmup", 1, "--threads", 1, "--no-reference", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    remote = [r for r in rows if r["device"] == "loop"]
    assert len(remote) == 4 and all(r["host_agreement"] == 1.0 for r in remote)
    # the bundle was unpacked in the profile's work folder and checked there
    (unpacked,) = (tmp_path / "device-work").iterdir()
    assert json.loads((unpacked / "manifest.json").read_text()) == json.loads((bundle_dir / "manifest.json").read_text())
    archive = bundle_dir.with_name("bundle.tar.gz")  # the archive make_bundle wrote beside the folder
    table = edgecnn(env, "bench", "--bundle", archive, "--device", "loop", "--formats", "tflite", "--runs", 5,
                    "--threads", 1)
    assert table.returncode == 0 and "model.int8.tflite" in table.stdout and "p50" in table.stdout


def test_emulated_aarch64_board_gives_the_hosts_int8_predictions(env, bundle_dir, arm64_python, tmp_path):
    add_device(env, "arm64", arm64_python, str(tmp_path / "board"))
    int8 = ["model.int8.onnx", "model.int8.tflite", "model.int8.ncnn"]
    # the int8 files only, on 100 sample images: the board is ~300x slower than the host
    result = edgecnn(env, "bench", "--bundle", bundle_dir, "--device", "host,arm64", "--runs", 3, "--warmup", 1,
                     "--threads", 1, "--sample", 100, "--no-reference", "--json", "--precision", "int8",
                     timeout=900)
    assert result.returncode == 0, result.stderr
    rows = {(r["device"], r["file"]): r for r in json.loads(result.stdout)["rows"]}
    assert {f for _, f in rows} == set(int8)
    for file in int8:
        board = rows[("arm64", file)]
        assert board["arch"] == "aarch64" and board["sample_images"] == 100
        assert board["host_agreement"] == 1.0, f"{file}: top-1 differs from the host on the emulated board"
        assert board["accuracy"] == rows[("host", file)]["accuracy"]
    assert rows[("arm64", "model.int8.onnx")]["versions"]["onnxruntime"]
    assert rows[("arm64", "model.int8.tflite")]["versions"]["ai-edge-litert"]
    assert rows[("arm64", "model.int8.ncnn")]["versions"]["ncnn"]


def test_unknown_device_and_unreachable_host(env, bundle_dir, sshd, tmp_path):
    assert "unknown device 'rpi9'" in one_line_error(edgecnn(env, "bench", "--bundle", bundle_dir, "--device", "rpi9"))
    env = {**env, "EDGECNN_SSH_CONFIG": sshd["config"]("closed", sshd["dir"] / "known_hosts", sshd["free_port"]())}
    add_device(env, "gone", sys.executable, str(tmp_path / "w"))
    result = edgecnn(env, "bench", "--bundle", bundle_dir, "--device", "gone", "--no-reference")
    assert result.returncode == 1
    assert "device gone: cannot reach loopdev" in one_line_error(result)


def test_host_key_mismatch_stops_before_anything_runs(env, bundle_dir, sshd, tmp_path):
    sshd["keygen"](tmp_path / "other")
    other = (tmp_path / "other.pub").read_text().split()
    (tmp_path / "wrong_known_hosts").write_text(f"[127.0.0.1]:{sshd['port']} {other[0]} {other[1]}\n")
    env = {**env, "EDGECNN_SSH_CONFIG": sshd["config"]("mismatch", tmp_path / "wrong_known_hosts")}
    add_device(env, "spoofed", sys.executable, str(tmp_path / "w"))
    result = edgecnn(env, "bench", "--bundle", bundle_dir, "--device", "spoofed", "--no-reference")
    assert "does not match known_hosts" in one_line_error(result)
    assert not (tmp_path / "w").exists()  # no upload happened


def test_missing_runtime_on_the_device_keeps_the_other_runtime(env, bundle_dir, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for module in ("ai_edge_litert", "tflite_runtime"):  # this "board" has onnxruntime but no TFLite runtime
        (blocked / f"{module}.py").write_text("raise ImportError('not installed')\n")
    python = tmp_path / "python-without-litert"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={blocked} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    add_device(env, "nolitert", str(python), str(tmp_path / "w"))
    result = edgecnn(env, "bench", "--bundle", bundle_dir, "--device", "nolitert", "--runs", 5, "--json",
                     "--formats", "onnx,tflite")
    assert result.returncode == 1
    errors = json.loads(result.stdout)["errors"]
    assert len(errors) == 2 and all(f"fix: {python} -m pip install ai-edge-litert" in e for e in errors)
    assert "needs ai-edge-litert" in one_line_error(result)
    rows = {r["file"]: r for r in json.loads(result.stdout)["rows"]}
    assert {f for f, r in rows.items() if r["status"] == "ok"} == {"model.fp32.onnx", "model.int8.onnx"}
    # each file the board cannot run is a row with its reason, in the store too
    assert {f for f, r in rows.items() if r["status"] == "failed"} == {"model.fp32.tflite", "model.int8.tflite"}
    assert all("needs ai-edge-litert" in r["error"] for r in rows.values() if r["status"] == "failed")
    stored = ResultStore(env["EDGECNN_RESULTS"]).rows(json.loads(result.stdout)["session"])
    assert sorted(r["status"] for r in stored) == ["failed", "failed", "ok", "ok"]


def test_tampered_and_hostile_bundles_are_refused(env, bundle_dir, tmp_path):
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle_dir, tampered)
    data = bytearray((tampered / "model.int8.onnx").read_bytes())
    data[-1] ^= 1
    (tampered / "model.int8.onnx").write_bytes(bytes(data))
    line = one_line_error(edgecnn(env, "bench", "--bundle", tampered))
    assert "model.int8.onnx does not match its sha256" in line
    hostile = tmp_path / "hostile.tar.gz"
    with tarfile.open(hostile, "w:gz") as tar:
        info = tarfile.TarInfo("bundle/../../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    assert "refusing to extract" in one_line_error(edgecnn(env, "bench", "--bundle", hostile))
    assert not any(p.name == "escaped.txt" for p in tmp_path.rglob("escaped.txt"))
    assert "bundle not found" in one_line_error(edgecnn(env, "bench", "--bundle", tmp_path / "nowhere"))


def _processes_in(folder: Path) -> list[int]:
    """PIDs whose working folder is inside `folder` (the runner runs in the bundle folder on the device)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")).is_relative_to(folder):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_killed_connection_keeps_results_and_leaves_nothing_running(env, bundle_dir, sshd, tmp_path):
    work = tmp_path / "device-work"
    add_device(env, "flaky", sys.executable, str(work), threads="1,2")
    store = ResultStore(env["EDGECNN_RESULTS"])
    # two files x two thread counts, each timing loop several seconds long: the connection is dropped while the
    # second one runs, after the first has been stored
    bench = subprocess.Popen([sys.executable, "-m", "edgecnn", "bench", "--bundle", str(bundle_dir), "--device",
                              "flaky", "--formats", "onnx", "--runs", "12000", "--warmup", "0", "--no-reference"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (store.rows() and _runner_timing(work)) and time.monotonic() < deadline and bench.poll() is None:
        time.sleep(0.1)
    assert bench.poll() is None and store.rows(), "the first measurement never finished"
    subprocess.run(["pkill", "-TERM", "-P", str(sshd["pid"])])  # drop every SSH connection to the device
    _, stderr = bench.communicate(timeout=120)
    assert bench.returncode == 1 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith("edgecnn: error: device flaky:")
    kept = store.rows()
    assert 1 <= len(kept) < 4 and all(r["device"] == "flaky" and r["p50_ms"] > 0 for r in kept)
    for _ in range(100):
        if not _processes_in(work):
            break
        time.sleep(0.1)
    assert _processes_in(work) == [], "runner processes survived the dropped connection"


def _runner_timing(work: Path) -> bool:
    for pid in _processes_in(work):
        try:
            if b"bench" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def test_a_real_pi_gets_the_files_its_cpu_counts_cheapest_until_it_is_benched(bundle_dir, tmp_path):
    """files_for_device (edgecnn bundle --device): per format and precision the cheapest form by the device's own
    rows; a real Pi with none yet takes the emulated board of its CPU; nothing measured ships every file."""
    from edgecnn.bench.harness import files_for_device
    from edgecnn.devices.profiles import get_profile
    from edgecnn.export.bundle import Manifest

    export_dir = bundle_dir.parent  # the export folder holding bundle/
    bundle = Manifest.read(bundle_dir).bundle_id
    store = ResultStore(tmp_path / "s.sqlite")
    rpi4 = get_profile("rpi4")
    assert files_for_device(export_dir, rpi4, store)[0] is None
    counted = {"model.int8.tflite": 9e6, "model.int8.naive.tflite": 7e6, "model.int8.onnx": 8e6}
    for file, instructions in counted.items():
        store.add({"session": "s", "device": "pi4-emulated", "bundle": bundle, "file": file, "status": "ok",
                   "format": file.rsplit(".", 1)[-1], "precision": "int8", "judge": "instructions",
                   "target": "cortex-a72", "instructions": instructions})
    files, why = files_for_device(export_dir, rpi4, store)
    assert files == ["model.int8.naive.tflite", "model.int8.onnx"] and "cortex-a72" in why
    store.add({"session": "t", "device": "rpi4", "bundle": bundle, "file": "model.int8.tflite", "status": "ok",
               "format": "tflite", "precision": "int8", "judge": "timing", "p50_ms": 3.0})
    assert files_for_device(export_dir, rpi4, store)[0] == ["model.int8.tflite"]  # the board's own timing wins


def test_devices_on_this_machines_cores_are_benched_one_after_another(bundle_dir, tmp_path, monkeypatch):
    """The host and an emulated board both compute on this machine's cores: benched at once, the emulator would
    slow the host's timings. They take turns; an SSH device (its own CPU) runs beside them."""
    from edgecnn.bench import harness
    from edgecnn.bench.options import BenchPlan
    from edgecnn.devices.profiles import get_profile
    from edgecnn.export.bundle import Manifest

    spans = {}

    def fake_device(profile, folder, manifest, plan, store, session, tick):
        start = time.monotonic()
        time.sleep(0.3)
        spans[profile.name] = (start, time.monotonic())
        return harness.DeviceOutcome(profile.name)

    monkeypatch.setattr(harness, "bench_device", fake_device)
    profiles = [get_profile(name) for name in ("host", "rpi4", "pi4-emulated", "rpi5")]
    assert [[p.name for p in lane] for lane in harness.lanes(profiles)] == [["host", "pi4-emulated"], ["rpi4"],
                                                                          ["rpi5"]]
    _, outcomes = harness.run_bench(profiles, bundle_dir, Manifest.read(bundle_dir), BenchPlan(),
                                    ResultStore(tmp_path / "bench.sqlite"))
    assert [o.device for o in outcomes] == ["host", "rpi4", "pi4-emulated", "rpi5"]  # in the order asked
    host, emulated, board = spans["host"], spans["pi4-emulated"], spans["rpi4"]
    assert host[1] <= emulated[0] or emulated[1] <= host[0]  # never at the same time
    assert board[0] < host[1] and host[0] < board[1]  # the SSH device beside the host


def test_one_device_gets_the_bundle_made_for_it(exported, trained_run, tmp_path):
    """`edgecnn bundle --device rpi4` writes bundle-rpi4; bench and deploy on rpi4 alone take it, others the plain
    bundle."""
    from edgecnn.bench.harness import locate_bundle
    from edgecnn.export.bundle import make_bundle

    export = tmp_path / "artifacts" / "run"
    shutil.copytree(exported[1], export, ignore=shutil.ignore_patterns("bundle*"))
    make_bundle(export, export / "bundle", sample=10, data_dir=trained_run[1], archive=False)
    make_bundle(export, export / "bundle-rpi4", sample=10, data_dir=trained_run[1], archive=False,
                files=["model.int8.tflite"])
    root = tmp_path / "artifacts"
    assert locate_bundle(None, None, None, root, device="rpi4")[0] == export / "bundle-rpi4"
    assert locate_bundle(None, None, None, root, device="rpi5")[0] == export / "bundle"
    assert locate_bundle(None, None, None, root)[0] == export / "bundle"
