"""Where a CPU training step's time goes, by kind of operator, and the speed that would remain if everything but
the convolution and BatchNorm kernels cost nothing.

A bare step (forward, cross-entropy, backward, SGD with momentum) on random Fashion-MNIST-shaped batches, with
the model as `edgecnn train` builds it and torch's profiler around --steps steps after warm-up. Run it under the
allocator `edgecnn train` uses (it re-executes itself under tcmalloc the same way) so the numbers are the loop's:

    python benchmarks/train_op_profile.py --models exp13 exp11
    python benchmarks/train_op_profile.py --models exp13 --bf16      # also bf16 autocast (AMX/AVX-512 BF16 CPUs)

"kernel bound" is batch / (conv + BatchNorm self time per step): the images/s of a loop whose every other op
(activations, adds, concatenations, channel-shuffle copies, optimizer, Python) took no time at all. The profiler
adds a little per op, so the measured images/s here sit a few per cent under benchmarks/train_throughput.py's.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import defaultdict

import torch

from edgecnn.malloc import loaded_allocator, reexec_under_tcmalloc

CONV_OPS = {"aten::mkldnn_convolution": "forward", "aten::convolution_backward": "backward"}
BN_OPS = {"aten::native_batch_norm": "forward", "aten::native_batch_norm_backward": "backward"}


def conv_kind(weight_shape: list[int], input_channels: int) -> str:
    out_channels, in_per_group, kh, kw = weight_shape
    if in_per_group == 1 and out_channels >= input_channels > 1:
        return f"depthwise {kh}x{kw}"
    grouped = in_per_group != input_channels
    return f"{'grouped' if grouped else 'dense'} {kh}x{kw}"


def profile_step(model_name: str, batch_size: int, steps: int, bf16: bool) -> tuple[dict[str, float], float]:
    """ms per step by operator class, and the measured images/s, for one model."""
    from edgecnn.compress.zoo import get_model

    torch.utils.deterministic.fill_uninitialized_memory = False  # as edgecnn's loop (compress/train/loop.py)
    torch.manual_seed(0)
    model = get_model(model_name, 10, 1).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    images, labels = torch.randn(batch_size, 1, 32, 32), torch.randint(0, 10, (batch_size,))
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def step() -> None:
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        started = time.perf_counter()
        for _ in range(steps):
            step()
        elapsed = time.perf_counter() - started
    per_class: dict[str, float] = defaultdict(float)
    for event in prof.key_averages(group_by_input_shape=True):
        ms = event.self_cpu_time_total / 1000 / steps
        if event.key in CONV_OPS:
            shapes = event.input_shapes  # forward: (input, weight, ...); backward: (grad_out, input, weight, ...)
            x, w = (shapes[0], shapes[1]) if CONV_OPS[event.key] == "forward" else (shapes[1], shapes[2])
            per_class[f"conv {conv_kind(w, x[1])} {CONV_OPS[event.key]}"] += ms
        elif event.key in BN_OPS:
            per_class[f"BatchNorm {BN_OPS[event.key]}"] += ms
        else:
            per_class["everything else"] += ms
    return dict(per_class), steps * batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["exp13"])
    parser.add_argument("--batch-size", type=int, default=64, help="the `fast` recipe's batch")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--bf16", action="store_true", help="also profile with bf16 autocast")
    args = parser.parse_args()
    reexec_under_tcmalloc()  # the allocator `edgecnn train` runs under
    modes = [False, True] if args.bf16 else [False]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {loaded_allocator()} allocator, "
          f"batch {args.batch_size}, {args.steps} profiled steps; ms per step (self time)")
    for name in args.models:
        results = {bf16: profile_step(name, args.batch_size, args.steps, bf16) for bf16 in modes}
        classes = sorted({c for per_class, _ in results.values() for c in per_class},
                         key=lambda c: (c == "everything else", -results[False][0].get(c, 0.0)))
        header = "".join(f"{'bf16 autocast' if bf16 else 'fp32':>15}" for bf16 in modes)
        print(f"\n{name}\n{'operator class':<34}{header}")
        for cls in classes:
            print(f"{cls:<34}" + "".join(f"{results[bf16][0].get(cls, 0.0):>15.1f}" for bf16 in modes))
        totals = {bf16: sum(per_class.values()) for bf16, (per_class, _) in results.items()}
        kernels = {bf16: sum(v for c, v in per_class.items() if c != "everything else")
                   for bf16, (per_class, _) in results.items()}
        print(f"{'total':<34}" + "".join(f"{totals[bf16]:>15.1f}" for bf16 in modes))
        print(f"{'measured images/s':<34}" + "".join(f"{results[bf16][1]:>15.1f}" for bf16 in modes))
        print(f"{'kernel bound images/s':<34}"
              + "".join(f"{1000 * args.batch_size / kernels[bf16]:>15.1f}" for bf16 in modes))


if __name__ == "__main__":
    main()
