"""Wall time of one sweep, serial (`edgecnn pipeline`) against Ray (`--ray local`, one core per task), on the same
three models, the same generated CIFAR-format data and empty work folders. Nothing else should run.

    python benchmarks/sweep_wall_time.py --epochs 2 --train-size 2000
    python benchmarks/sweep_wall_time.py --models vgg19-exp8,vgg19-exp13,vgg19-exp10 --epochs 3 --train-size 6000

Each mode runs in a fresh folder: train (all three), export ONNX fp32, bundle, bench on the host (1 thread),
report. Prints the two wall times, the speed-up and the core count.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NETS = """
from torch import nn


def small(num_classes, in_chans):
    return nn.Sequential(nn.Conv2d(in_chans, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))


def wider(num_classes, in_chans):
    return nn.Sequential(nn.Conv2d(in_chans, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))
"""
MODELS = "vgg19-exp8,nets.py:small,nets.py:wider"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run(mode: str, epochs: int, train_size: int, models: str) -> float:
    from edgecnn.data import write_synthetic_cifar

    folder = Path(tempfile.mkdtemp(prefix=f"sweep-{mode}-"))
    (folder / "nets.py").write_text(NETS)
    write_synthetic_cifar(folder / "data", 10, train_size=train_size, test_size=500, seed=1)
    command = [sys.executable, "-m", "edgecnn", "pipeline", "--models", models, "--dataset", "cifar10", "--epochs",
               str(epochs), "--formats", "onnx", "--no-int8", "--forms", "op-minimal", "--threads", "1",
               "--bench-runs", "50", "--data-dir", "data", "--no-qat"]
    if mode == "ray":
        command += ["--ray", "local", "--cpus-per-task", "1"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{mode} sweep failed: {done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--models", default=MODELS, help="comma list (nets.py:small and nets.py:wider are tiny "
                                                          "nets written into the work folder)")
    args = parser.parse_args()
    serial = run("serial", args.epochs, args.train_size, args.models)
    print(f"serial: {serial:.1f} s", flush=True)
    ray = run("ray", args.epochs, args.train_size, args.models)
    print(f"ray (local, 1 core per task): {ray:.1f} s")
    print(f"speed-up {serial / ray:.2f}x; {os.cpu_count()} cores, {cpu_name()}; models {args.models}, "
          f"{args.epochs} epochs on {args.train_size} generated images, {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
