"""Run an exported classifier with numpy and one inference runtime: no torch, no edgecnn.

This single file is what a device needs: edgecnn's export stage uses it to measure the accuracy of each file
*through its own runtime*, the benchmark harness times it, and deployment bundles ship a copy of it. It imports
only numpy and, lazily, the runtime a file needs (onnxruntime for .onnx, ai-edge-litert for .tflite), so a board
with only one of them installed can still run the other format's files.

Adding a runtime means adding one Backend subclass here and naming its file suffix in BACKENDS.

    from runner import open_model, preprocess
    model = open_model("model.int8.tflite", threads=2)
    logits = model.predict(preprocess(images_uint8_nchw, mean, std))
"""

from __future__ import annotations

import os

import numpy as np


def preprocess(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 normalized exactly as training did (ToTensor, then Normalize)."""
    x = images.astype(np.float32) / np.float32(255.0)
    mean = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return (x - mean) / std


class Backend:
    """One loaded model. predict() takes float32 NCHW, normalized, any batch size, and returns float32 logits."""

    runtime = ""

    def __init__(self, path: str, threads: int | None = None, layout: str = "NCHW"):
        if layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be NCHW or NHWC, not {layout!r}")
        self.path, self.threads, self.layout = path, threads, layout

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1) if self.layout == "NHWC" else x, dtype=np.float32)
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OnnxRuntimeBackend(Backend):
    runtime = "onnxruntime"

    def __init__(self, path: str, threads: int | None = None, layout: str = "NCHW"):
        super().__init__(path, threads, layout)
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One inter-op thread and sequential execution: a CNN is a chain, and parallel branches would only make
        # latency noisier. intra_op_num_threads=0 lets onnxruntime pick (one per core).
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0].astype(np.float32, copy=False)


class LiteRTBackend(Backend):
    """ai-edge-litert (TFLite). Integer-quantized inputs and outputs are (de)quantized here with the tensors' own
    scale and zero point, so callers always see float; a fixed batch dimension is fed one slice at a time."""

    runtime = "litert"

    def __init__(self, path: str, threads: int | None = None, layout: str = "NCHW"):
        super().__init__(path, threads, layout)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # older boards ship the same interpreter as tflite_runtime
            from tflite_runtime.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=path, num_threads=threads or os.cpu_count() or 1)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = int(self.input["shape"][0])

    def _run(self, x: np.ndarray) -> np.ndarray:
        outputs = [self._invoke(x[i:i + self.batch]) for i in range(0, len(x), self.batch)]
        return np.concatenate(outputs)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        if np.issubdtype(self.output["dtype"], np.integer):
            scale, zero = self.output["quantization"]
            y = (y.astype(np.float32) - zero) * np.float32(scale)
        return y.astype(np.float32, copy=False)


BACKENDS = {".onnx": OnnxRuntimeBackend, ".tflite": LiteRTBackend}


def open_model(path: str, threads: int | None = None, layout: str = "NCHW") -> Backend:
    """Load a model file with the runtime its suffix names."""
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in BACKENDS:
        raise ValueError(f"no runtime for {suffix or 'a file without suffix'}; known: {', '.join(BACKENDS)}")
    return BACKENDS[suffix](str(path), threads, layout)


def predict_batches(model: Backend, images: np.ndarray, mean, std, batch_size: int = 256):
    """Yield (start, logits) over uint8 NCHW images, preprocessing one batch at a time to bound memory."""
    for start in range(0, len(images), batch_size):
        yield start, model.predict(preprocess(images[start:start + batch_size], mean, std))


def benchmark(path: str, threads: int | None = None, batch: int = 1, warmup: int = 30, runs: int = 200,
              layout: str = "NCHW", seconds: float | None = None) -> dict:
    """Latency of one file in this process: `warmup` untimed calls, then `runs` timed ones (or as many as fit in
    `seconds`), on a fixed random input. Peak memory is the process's, so call it in a fresh process per file."""
    import resource
    import time

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    model = open_model(path, threads, layout)
    load_ms = (time.perf_counter() - started) * 1e3
    shape = _input_shape(model, batch)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(warmup):
        model.predict(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.predict(x)
        times.append((time.perf_counter() - t0) * 1e3)
    ms = np.asarray(times)
    return {"file": os.path.basename(path), "runtime": model.runtime, "threads": threads, "batch": batch,
            "runs": len(times), "warmup": warmup, "load_ms": round(load_ms, 2),
            **{f"p{q}_ms": round(float(np.percentile(ms, q)), 4) for q in (50, 90, 99)},
            "mean_ms": round(float(ms.mean()), 4), "min_ms": round(float(ms.min()), 4),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_after_import_mib": round(rss_before / 1024, 1)}


def _input_shape(model: Backend, batch: int) -> tuple[int, ...]:
    if isinstance(model, OnnxRuntimeBackend):
        dims = model.session.get_inputs()[0].shape[1:]
    else:
        dims = [int(d) for d in model.input["shape"][1:]]
        if model.layout == "NHWC":
            dims = [dims[2], dims[0], dims[1]]
    return (batch, *[int(d) for d in dims])


def main(argv=None) -> int:
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(description="Run or time an exported classifier (numpy + its runtime only).")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="latency percentiles and peak memory of one model file, as JSON")
    bench.add_argument("model")
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--batch", type=int, default=1)
    bench.add_argument("--warmup", type=int, default=30)
    bench.add_argument("--runs", type=int, default=200)
    bench.add_argument("--layout", default="NCHW", choices=("NCHW", "NHWC"))
    args = parser.parse_args(argv)
    try:
        result = benchmark(args.model, args.threads, args.batch, args.warmup, args.runs, args.layout)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"runner: error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
