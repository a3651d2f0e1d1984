"""Where onnxruntime spends an exported model's time, by kind of operator, fp32 file next to int8 file.

Batch 1, one random input, onnxruntime's own profiler (per-node kernel times) over --runs runs after warm-up,
on the graph onnxruntime actually runs (after its own fusions and layout changes):

    python benchmarks/onnx_op_profile.py artifacts/exp13-fmnist-3ep artifacts/exp11-fmnist-3ep --threads 1

Each row is a kind of node (convolutions split into depthwise, grouped and dense, and by kernel size): µs per
run and how many nodes of that kind run. The profiler adds a little to every node, so totals sit above the
p50 of benchmarks/int8_speedup.py; the split between rows is what this script is for.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

FILES = ("model.fp32.onnx", "model.int8.onnx")
CONV_TYPES = {"Conv", "QLinearConv", "FusedConv"}


def node_kinds(optimized: Path) -> dict[str, str]:
    """Node name -> kind, read off the graph onnxruntime runs (its fused and re-laid-out convs included)."""
    import onnx

    graph = onnx.load(str(optimized)).graph
    weights = {init.name: list(init.dims) for init in graph.initializer}
    kinds = {}
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        kind = node.op_type
        if node.op_type in CONV_TYPES and "kernel_shape" in attrs:
            kh, kw = attrs["kernel_shape"].ints
            groups = attrs["group"].i if "group" in attrs else 1
            weight = weights.get(node.input[3 if node.op_type == "QLinearConv" else 1], [])
            depthwise = groups > 1 and len(weight) == 4 and weight[1] == 1
            kind += f" {'depthwise' if depthwise else 'grouped' if groups > 1 else 'dense'} {kh}x{kw}"
        kinds[node.name] = kind
    return kinds


def profile_file(path: Path, threads: int, runs: int) -> tuple[dict[str, list[float]], float]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgecnn-ort-profile-") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        plain = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        kinds = node_kinds(Path(options.optimized_model_filepath))
        feed = {plain.get_inputs()[0].name: np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32)}
        for _ in range(20):
            plain.run(None, feed)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            plain.run(None, feed)
            times.append(time.perf_counter() - started)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        profiled = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(20 + runs):
            profiled.run(None, feed)
        events = json.loads(Path(profiled.end_profiling()).read_text())
    per_kind: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    kernel_events = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    for event in kernel_events[-runs * (len(kernel_events) // (20 + runs)):]:  # the timed runs, not the warm-up
        node = event["name"][: -len("_kernel_time")]
        entry = per_kind[kinds.get(node, event["args"]["op_name"])]
        entry[0] += event["dur"] / runs
        entry[1] += 1 / runs
    return dict(per_kind), 1e6 * float(np.median(times))  # µs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", type=Path, help="export folders with model.fp32.onnx, model.int8.onnx")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    for folder in args.exports:
        results = {name: profile_file(folder / name, args.threads, args.runs)
                   for name in FILES if (folder / name).is_file()}
        kinds = sorted({k for per_kind, _ in results.values() for k in per_kind},
                       key=lambda k: -max(per_kind.get(k, [0.0])[0] for per_kind, _ in results.values()))
        print(f"\n{folder} ({args.threads} thread{'s' if args.threads > 1 else ''}, batch 1, µs per run, nodes)")
        print(f"{'node kind':<28}" + "".join(f"{name:>24}" for name in results))
        for kind in kinds:
            cells = [per_kind.get(kind) for per_kind, _ in results.values()]
            print(f"{kind:<28}" + "".join(f"{c[0]:>16.1f} ({round(c[1]):>4})" if c else f"{'-':>24}" for c in cells))
        print(f"{'total (profiled)':<28}" + "".join(f"{sum(v[0] for v in per_kind.values()):>24.1f}"
                                                   for per_kind, _ in results.values()))
        print(f"{'median run, not profiled':<28}" + "".join(f"{median_us:>24.1f}" for _, median_us in results.values()))


if __name__ == "__main__":
    main()
