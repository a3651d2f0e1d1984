"""Training throughput on this machine: a plain eager loop next to edgecnn's own training loop.

plain    torchvision FashionMNIST + per-image PIL transforms (pad, random crop 4 px, flip, ToTensor, Normalize),
         DataLoader(batch 128, shuffle, num_workers=0), eager model, SGD with momentum: what a short tutorial does.
edgecnn  `edgecnn.compress.train.train()` itself (recipe "fast": batch 64, uint8 images in memory, batch-level
         crop/flip, denormals flushed), stopped after a number of steps.

Each measurement skips warm-up steps, then times steps for about --seconds; the two loops alternate for --repeats
rounds and the median is printed, because shared machines drift. Usage:

    python benchmarks/train_throughput.py                       # exp13 exp11 exp6 vgg19-exp8 resnet101-exp1
    python benchmarks/train_throughput.py --models exp13 --repeats 3 --seconds 30
    python benchmarks/train_throughput.py --models exp13 --compile     # also edgecnn's loop with --compile

With --compile the compiled step is timed after the warm-up steps, which include the compilation (about 80 s
for exp13 on 2 cores); the compile time itself is not in the images/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

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
    from edgecnn.compress.train import Reporter, TrainConfig, train

    marks: dict[str, float] = {}

    class Clock(Reporter):
        def batch(self, epoch, step, loss, acc, images_per_s):
            if step + 1 == WARMUP_STEPS:
                marks["start"], marks["steps"] = time.perf_counter(), 0
            elif "start" in marks:
                marks["steps"] += 1
                if time.perf_counter() - marks["start"] > seconds:
                    marks["end"] = time.perf_counter()
                    raise _Stop

    config = TrainConfig(model=model_name, dataset="fashion-mnist", recipe="fast", runs_dir=runs_dir,
                         name=f"bench-{model_name}-{time.monotonic_ns()}", compile=compile)
    try:
        train(config, reporter=Clock())
    except _Stop:
        pass
    return marks["steps"] * config.recipe_values().batch_size / (marks["end"] - marks["start"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["exp13", "exp11", "exp6", "vgg19-exp8", "resnet101-exp1"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per measurement")
    parser.add_argument("--compile", action="store_true", help="also time edgecnn's loop with torch.compile")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, Fashion-MNIST 1x32x32")
    extra = f"{'compiled img/s':>16}{'speed-up':>10}" if args.compile else ""
    print(f"{'model':<18}{'plain img/s':>14}{'edgecnn img/s':>16}{'speed-up':>10}{extra}   (median of {args.repeats})")
    with tempfile.TemporaryDirectory() as runs_dir:
        for name in args.models:
            plain, ours, compiled = [], [], []
            for _ in range(args.repeats):
                plain.append(plain_loop(name, args.seconds))
                ours.append(edgecnn_loop(name, args.seconds, runs_dir))
                if args.compile:
                    compiled.append(edgecnn_loop(name, args.seconds, runs_dir, compile=True))
            p, o = statistics.median(plain), statistics.median(ours)
            line = f"{name:<18}{p:>14.1f}{o:>16.1f}{o / p:>9.2f}x"
            if compiled:
                c = statistics.median(compiled)
                line += f"{c:>16.1f}{c / p:>9.2f}x"
            print(f"{line}   plain {[round(v, 1) for v in plain]}  edgecnn {[round(v, 1) for v in ours]}"
                  + (f"  compiled {[round(v, 1) for v in compiled]}" if compiled else ""), flush=True)


if __name__ == "__main__":
    main()
