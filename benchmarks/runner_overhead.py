"""Harness overhead: the runner's latency against onnxruntime's / LiteRT's own call, in the same process.

For each file, three loops alternate for --rounds rounds (so drift hits all of them alike):
  raw      session.run / set_tensor+invoke+get_tensor on a prepared input, nothing else
  runner   runner.Backend.predict (layout handling, int8 quantisation of the input, float output)
  bench    runner.benchmark(), the function `runner.py bench` runs (fresh Backend, its own warm-up)
and the medians of the per-round p50s are printed with runner/raw and bench/raw ratios.

    python benchmarks/runner_overhead.py artifacts/exp13-fmnist-3ep/model.*.onnx artifacts/exp13-fmnist-3ep/model.*.tflite
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def p50(call, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def raw_call(model, x):
    from edgecnn.export import runner

    if isinstance(model, runner.OnnxRuntimeBackend):
        feed = {model.input_name: x}
        return lambda: model.session.run([model.output_name], feed)
    interpreter, details = model.interpreter, model.input
    if np.issubdtype(details["dtype"], np.integer):
        scale, zero = details["quantization"]
        x = np.clip(np.round(x / scale) + zero, -128, 127).astype(details["dtype"])

    def call():
        interpreter.set_tensor(details["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(model.output["index"])
    return call


def main() -> None:
    from edgecnn.export import runner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{'file':<60} {'raw p50':>9} {'runner':>9} {'bench':>9} {'runner/raw':>11} {'bench/raw':>10}")
    for path in args.files:
        model = runner.open_model(path, args.threads)
        x = np.random.default_rng(0).standard_normal(runner._input_shape(model, 1)).astype(np.float32)
        raw, wrapped = raw_call(model, x), (lambda: model.predict(x))
        for _ in range(30):
            raw(), wrapped()
        rounds = {"raw": [], "runner": [], "bench": []}
        for _ in range(args.rounds):
            rounds["raw"].append(p50(raw, args.runs))
            rounds["runner"].append(p50(wrapped, args.runs))
            rounds["bench"].append(runner.benchmark(path, args.threads, warmup=30, runs=args.runs)["p50_ms"])
        m = {k: statistics.median(v) for k, v in rounds.items()}
        print(f"{path:<60} {m['raw']:>9.4f} {m['runner']:>9.4f} {m['bench']:>9.4f} "
              f"{m['runner'] / m['raw']:>11.3f} {m['bench'] / m['raw']:>10.3f}")


if __name__ == "__main__":
    main()
