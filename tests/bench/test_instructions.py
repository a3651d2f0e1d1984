"""The deterministic ARM cost measure: executed aarch64 instructions per inference, counted on the emulated board
by the TCG plugin devices/emulated/icount.c between the runner's markers. Checked for what makes it a measure:
it is linear in the number of inferences counted, it changes no prediction, `edgecnn bench` reports it on a
profile judged by instructions, and a profile says where the instructions go."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def counter(arm64_python):
    board = Path(arm64_python).parent / "boards" / "cortex-a72"
    assert (board / "python3-count").is_file(), "scripts/arm64-device.sh builds the counter (needs qemu-user, gcc)"
    return board


def run(python, bundle, *args, env=None):
    return subprocess.run([str(python), str(bundle / "runner.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=900, cwd=bundle, env=env)


def counted(result) -> int:
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgecnn-icount ")]
    assert len(lines) == 1, result.stderr
    return int(lines[0].split()[1])


def test_the_count_is_linear_in_the_runs_and_deterministic(counter, bundle_dir):
    python = counter / "python3-count"
    three, six = (counted(run(python, bundle_dir, "count", "model.int8.tflite", "--runs", k)) for k in (3, 6))
    assert three > 100_000  # a real network's inferences, not the markers' own overhead
    assert abs(six / 6 - three / 3) / (three / 3) < 0.005  # per inference, the same to 0.5 %
    again = counted(run(python, bundle_dir, "count", "model.int8.tflite", "--runs", 3))
    assert abs(again - three) / three < 0.005


def test_counting_changes_no_prediction(counter, bundle_dir):
    plain = run(counter / "python3", bundle_dir, "eval", "--model", "model.int8.tflite", "--limit", 20, "--json")
    under_counter = run(counter / "python3-count", bundle_dir, "eval", "--model", "model.int8.tflite", "--limit", 20, "--json")
    assert plain.returncode == 0 and under_counter.returncode == 0, plain.stderr + under_counter.stderr
    assert json.loads(plain.stdout)["results"] == json.loads(under_counter.stdout)["results"]


def test_bench_reports_instructions_per_inference_and_where_they_go(counter, bundle_dir, tmp_path):
    config = tmp_path / "config" / "devices"
    config.mkdir(parents=True)
    (config / "a72.toml").write_text(f'''description = "emulated cortex-a72"
transport = "local"
python = "{counter / 'python3'}"
counter = "{counter / 'python3-count'}"
judge = "instructions"
cpu = "cortex-a72"
threads = [1]
sample = 10
''')
    env = {**os.environ, "EDGECNN_CONFIG_DIR": str(tmp_path / "config"), "EDGECNN_RESULTS": str(tmp_path / "s.sqlite")}
    result = subprocess.run([sys.executable, "-m", "edgecnn", "bench", "--bundle", str(bundle_dir), "--device", "a72",
                             "--formats", "tflite", "--precision", "int8", "--count-runs", "3", "--profile", "--json"],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)["rows"]
    assert row["judge"] == "instructions" and row["threads"] == 1 and row["p50_ms"] is None
    assert row["instructions"] > 100_000 and row["emulated_ms"] > 0 and row["target"] == "cortex-a72"
    hottest = row["profile"][0]
    # XNNPACK's integer kernels, by their own names, carry the inference
    assert any("xnn_qs8" in name for name, _, _ in row["profile"]), row["profile"]
    assert 0 < hottest[2] <= 1 and sum(share for _, _, share in row["profile"]) <= 1.0001
