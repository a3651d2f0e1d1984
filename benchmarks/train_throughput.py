"""Training throughput on this machine: a plain eager loop next to edgecnn's own training loop.

plain    torchvision FashionMNIST + per-image PIL transforms (pad, random crop 4 px, flip, ToTensor, Normalize),
         DataLoader(batch 128, shuffle, num_workers=0), eager model, SGD with momentum: what a short tutorial does.
edgecnn  `edgecnn.compress.train.train()` itself (recipe "fast": batch 64, uint8 images in memory, batch-level
         crop/flip, denormals flushed), stopped after a number of steps; under tcmalloc, as `edgecnn train` runs
         (edgecnn/malloc.py), and once more under glibc ("edgecnn glibc") to show what the allocator adds.
edgecnn DDP  the same loop as 2 torchrun ranks with one thread each (global batch 64, 32 per rank), the fastest
         way found to use this machine's two cores (README, "CPU training speed").

Each measurement runs in a fresh process, skips warm-up steps, then times steps for about --seconds; the columns
alternate for --repeats rounds and the median is printed, because shared machines drift. Usage:

    python benchmarks/train_throughput.py                       # exp13 exp11 exp6 vgg19-exp8 resnet101-exp1
    python benchmarks/train_throughput.py --models exp13 --repeats 3 --seconds 30
    python benchmarks/train_throughput.py --models exp13 --compile     # also edgecnn's loop with --compile
    python benchmarks/train_throughput.py --models exp13 --ddp         # also 2 ranks x 1 thread

With --compile the compiled step is timed after the warm-up steps, which include the compilation (about 80 s
for exp13 on 2 cores); the compile time itself is not in the images/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from edgecnn.malloc import preload_env

WARMUP_STEPS = 3


def plain_loop(model_name: str, seconds: float, batch_size: int = 128) -> float:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from edgecnn.compress.zoo import get_model
    from edgecnn.data import DATASETS, _fashion_root

    info = DATASETS["fashion-mnist"]
    tf = transforms.Compose([transforms.Pad(2), transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(info.mean, info.std)])
    dataset = datasets.FashionMNIST(str(_fashion_root(None, False)), train=True, transform=tf)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    torch.manual_seed(0)
    model = get_model(model_name, 10, 1).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    images, started = 0, None
    for step, (x, y) in enumerate(loader):
        if step == WARMUP_STEPS:
            started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if started is not None:
            images += len(y)
            if time.perf_counter() - started > seconds:
                break
    return images / (time.perf_counter() - started)


class _Stop(Exception):
    pass


def edgecnn_loop(model_name: str, seconds: float, runs_dir: str, compile: bool = False) -> float:
    """edgecnn's own `train()`, stopped after about `seconds` of timed steps. Under torchrun every rank runs this;
    the ranks agree every few steps whether to stop, so all of them leave at the same step."""
    import torch.distributed as dist

    from edgecnn.compress.train import TrainConfig, train

    marks: dict[str, float] = {}

    def on_batch(epoch: int, step: int) -> None:
        if step + 1 == WARMUP_STEPS:
            marks["start"], marks["steps"] = time.perf_counter(), 0
        elif "start" in marks:
            marks["steps"] += 1
            if marks["steps"] % 5 == 0:
                done = torch.tensor([float(time.perf_counter() - marks["start"] > seconds)])
                if dist.is_initialized():
                    dist.all_reduce(done)
                if done.item() > 0:
                    marks["end"] = time.perf_counter()
                    raise _Stop

    config = TrainConfig(model=model_name, dataset="fashion-mnist", recipe="fast", runs_dir=runs_dir,
                         name=f"bench-{model_name}-{time.monotonic_ns()}", compile=compile)
    try:
        train(config, on_batch=on_batch)
    except _Stop:
        pass
    # the recipe's batch is the global one: under DDP each of the ranks takes its share of every step
    return marks["steps"] * config.recipe_values().batch_size / (marks["end"] - marks["start"])


# What each column runs: (loop, torch.compile, allocator, processes). "tcmalloc" is what `edgecnn train` runs under
# when the library is installed (edgecnn/malloc.py); the plain loop keeps the system allocator, as a tutorial
# script does. "edgecnn DDP" is `OMP_NUM_THREADS=1 torchrun --nproc-per-node 2 -m edgecnn train`: one rank per core.
COLUMNS = {"plain": ("plain", False, "system", 1), "edgecnn glibc": ("edgecnn", False, "system", 1),
           "edgecnn": ("edgecnn", False, "tcmalloc", 1), "edgecnn DDP": ("edgecnn", False, "tcmalloc", 2),
           "compiled": ("edgecnn", True, "tcmalloc", 1)}


def measure(column: str, model_name: str, seconds: float) -> float:
    """One measurement in a fresh process (allocators are chosen at process start; fresh processes also keep one
    column's compiled graphs or heap from colouring the next)."""
    loop, compiled, allocator, processes = COLUMNS[column]
    env = preload_env() if allocator == "tcmalloc" else None
    if allocator == "tcmalloc" and env is None:
        raise SystemExit("tcmalloc is not installed (Debian: libtcmalloc-minimal4); `edgecnn train` would run "
                         "under glibc here, so its column would not be what the CLI does")
    cmd = [sys.executable, __file__, "--measure", loop, "--models", model_name, "--seconds", str(seconds)]
    if processes > 1:
        env = {**(env or os.environ), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
               *cmd[1:]]
    done = subprocess.run(cmd + (["--compile"] if compiled else []), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{column} {model_name} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["exp13", "exp11", "exp6", "vgg19-exp8", "resnet101-exp1"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per measurement")
    parser.add_argument("--compile", action="store_true", help="also time edgecnn's loop with torch.compile")
    parser.add_argument("--ddp", action="store_true", help="also time edgecnn's loop as 2 DDP ranks x 1 thread")
    parser.add_argument("--measure", choices=["plain", "edgecnn"], help=argparse.SUPPRESS)  # one child measurement
    args = parser.parse_args()
    if args.measure:
        with tempfile.TemporaryDirectory() as runs_dir:
            value = (plain_loop(args.models[0], args.seconds) if args.measure == "plain"
                     else edgecnn_loop(args.models[0], args.seconds, runs_dir, compile=args.compile))
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{value:.3f}")
        return
    columns = [c for c in COLUMNS if (args.compile or c != "compiled") and (args.ddp or c != "edgecnn DDP")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, Fashion-MNIST 1x32x32, "
          f"median of {args.repeats} interleaved rounds, images/s (speed-up over plain)")
    print(f"{'model':<16}" + "".join(f"{c:>22}" for c in columns))
    for name in args.models:
        values: dict[str, list[float]] = {c: [] for c in columns}
        for _ in range(args.repeats):
            for column in columns:
                values[column].append(measure(column, name, args.seconds))
        plain = statistics.median(values["plain"])
        cells = [f"{statistics.median(v):>12.1f} ({statistics.median(v) / plain:.2f}x)" for v in values.values()]
        print(f"{name:<16}" + "".join(f"{c:>22}" for c in cells)
              + "   rounds: " + "  ".join(f"{c} {[round(x, 1) for x in v]}" for c, v in values.items()), flush=True)


if __name__ == "__main__":
    main()
