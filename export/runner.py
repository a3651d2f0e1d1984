"""Run an exported classifier with numpy and one inference runtime: no torch, no edgecnn.

This single file is what a device needs: edgecnn's export stage uses it to measure the accuracy of each file
*through its own runtime*, the benchmark harness times it, and deployment bundles ship a copy of it. It imports
only numpy and, lazily, the runtime a file needs (onnxruntime for .onnx, ai-edge-litert for .tflite), so a board
with only one of them installed can still run the other format's files.

Adding a runtime means adding one Backend subclass here and naming its file suffix in BACKENDS.

In a deployment bundle (export/bundle.py) it is also the command line: `python runner.py verify | eval |
predict IMAGE | bench`, each of which first checks every file's sha256 against manifest.json.

    from runner import open_model, preprocess
    model = open_model("model.int8.tflite", threads=2)
    logits = model.predict(preprocess(images_uint8_nchw, mean, std))
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import numpy as np


def preprocess(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 normalized exactly as training did (ToTensor, then Normalize)."""
    x = images.astype(np.float32) / np.float32(255.0)
    mean = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return (x - mean) / std


LAYOUTS = ("NCHW", "NHWC")


class Backend(ABC):
    """One loaded model. predict() takes float32 NCHW, normalized, any batch size, and returns float32 logits,
    whatever the file's own input layout (`layout`: NCHW, or NHWC for channel-last TFLite files)."""

    runtime = ""

    def __init__(self, path: str, threads: int | None = None, layout: str | None = None):
        if layout not in (None, *LAYOUTS):
            raise ValueError(f"layout must be NCHW or NHWC, not {layout!r}")
        self.path, self.threads, self.stated_layout = path, threads, layout
        self.layout = "NCHW"  # set from the file by each backend (_own_layout)

    def _own_layout(self, shape: list) -> str:
        """The layout the file's input shape shows, checked against the one the caller stated. edgecnn exports
        square images, so [N, S, S, C] with C != S is channel-last; anything else (also [N, S, S, S]) is NCHW."""
        dims = [d if isinstance(d, int) else 0 for d in shape]  # symbolic dimensions (ONNX's batch) count as 0
        own = "NHWC" if len(dims) == 4 and dims[1] == dims[2] > 0 and dims[3] != dims[2] else "NCHW"
        if self.stated_layout not in (None, own):
            raise ValueError(f"{self.path} takes {own} input {list(shape)}, not {self.stated_layout}")
        return own

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1) if self.layout == "NHWC" else x, dtype=np.float32)
        return self._run(x)

    @abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a float32 batch already in this file's layout."""


class OnnxRuntimeBackend(Backend):
    runtime = "onnxruntime"

    def __init__(self, path: str, threads: int | None = None, layout: str | None = None):
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
        self.layout = self._own_layout(self.session.get_inputs()[0].shape)
        self.output_name = self.session.get_outputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0].astype(np.float32, copy=False)


class LiteRTBackend(Backend):
    """ai-edge-litert (TFLite). Integer-quantized inputs and outputs are (de)quantized here with the tensors' own
    scale and zero point, so callers always see float; a fixed batch dimension is fed one slice at a time."""

    runtime = "litert"

    def __init__(self, path: str, threads: int | None = None, layout: str | None = None):
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
        self.layout = self._own_layout([int(d) for d in self.input["shape"]])

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


def open_model(path: str, threads: int | None = None, layout: str | None = None) -> Backend:
    """Load a model file with the runtime its suffix names; `layout` None = the file's own (see Backend)."""
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in BACKENDS:
        raise ValueError(f"no runtime for {suffix or 'a file without suffix'}; known: {', '.join(BACKENDS)}")
    return BACKENDS[suffix](str(path), threads, layout)


def predict_batches(model: Backend, images: np.ndarray, mean, std, batch_size: int = 256):
    """Yield (start, logits) over uint8 NCHW images, preprocessing one batch at a time to bound memory."""
    for start in range(0, len(images), batch_size):
        yield start, model.predict(preprocess(images[start:start + batch_size], mean, std))


def benchmark(path: str, threads: int | None = None, batch: int = 1, warmup: int = 30, runs: int = 200,
              layout: str | None = None, seconds: float | None = None) -> dict:
    """Latency of one file in this process: `warmup` untimed calls, then `runs` timed ones (or as many as fit in
    `seconds`), on a fixed random input. Peak memory is the process's, so call it in a fresh process per file."""
    import time

    rss_before = peak_rss_mib()
    started = time.perf_counter()
    model = open_model(path, threads, layout)
    load_ms = (time.perf_counter() - started) * 1e3
    shape = _input_shape(model, batch)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    t0 = time.perf_counter()
    model.predict(x)
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        model.predict(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.predict(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"file": os.path.basename(path), "runtime": model.runtime, "layout": model.layout, "threads": threads,
            "batch": batch, "warmup": warmup, "load_ms": round(load_ms, 2), "first_ms": round(first_ms, 3),
            **latency_stats(times),
            "peak_rss_mib": peak_rss_mib(), "rss_after_import_mib": rss_before, "versions": runtime_versions(),
            "machine": machine_info()}


def latency_stats(times_ms) -> dict:
    """runs, p50/p90/p99, mean, std, min and max of per-inference times in milliseconds."""
    ms = np.asarray(times_ms, dtype=np.float64)
    return {"runs": len(ms), **{f"p{q}_ms": round(float(np.percentile(ms, q)), 4) for q in (50, 90, 99)},
            "mean_ms": round(float(ms.mean()), 4), "std_ms": round(float(ms.std()), 4),
            "min_ms": round(float(ms.min()), 4), "max_ms": round(float(ms.max()), 4)}


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB. VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over
    fork and exec, so a runner started by a big parent (edgecnn with torch loaded) would report the parent's peak."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource  # not Linux: macOS reports bytes, the BSDs kilobytes

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if os.uname().sysname == "Darwin" else 1024), 1)


def runtime_versions() -> dict:
    import importlib.metadata as metadata

    versions = {"numpy": np.__version__}
    for package in ("onnxruntime", "ai-edge-litert", "tflite-runtime"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def machine_info() -> dict:
    import platform

    cpu = ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key = line.split(":")[0].strip().lower()
                if key in ("model name", "hardware", "cpu part") and not cpu:
                    cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"arch": platform.machine(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "cpus": os.cpu_count(), "cpu": cpu}


class BundleError(Exception):
    """A bundle that must not run: missing manifest, missing or changed file."""


def verify_bundle(folder: str) -> dict:
    """Check every file listed in manifest.json against its sha256; return the manifest."""
    import hashlib
    import json

    path = os.path.join(folder, "manifest.json")
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise BundleError(f"{folder} is not a bundle (no manifest.json)") from None
    except ValueError as error:
        raise BundleError(f"{path} is not valid JSON: {error}") from None
    if not str(manifest.get("format", "")).startswith("edgecnn-bundle/"):
        raise BundleError(f"{path} is not an edgecnn bundle manifest")
    for name, expected in manifest["files"].items():
        if os.path.basename(name) != name:
            raise BundleError(f"manifest names {name!r}, which is not a file of the bundle folder")
        digest = hashlib.sha256()
        try:
            with open(os.path.join(folder, name), "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except FileNotFoundError:
            raise BundleError(f"bundle file {name} is missing") from None
        if digest.hexdigest() != expected:
            raise BundleError(f"bundle file {name} does not match its sha256 in manifest.json (changed or corrupt)")
    return manifest


def load_image(path: str, channels: int) -> np.ndarray:
    """uint8 (C, 32, 32) from .npy (HxW or CxHxW), binary .pgm/.ppm, or whatever PIL reads if it is installed."""
    if path.endswith(".npy"):
        image = np.load(path, allow_pickle=False)
    elif path.endswith((".pgm", ".ppm")):
        with open(path, "rb") as handle:
            data = handle.read()
        fields = data.split(maxsplit=4)  # magic, width, height, maxval, pixels
        if fields[0] not in (b"P5", b"P6") or int(fields[3]) > 255:
            raise ValueError(f"{path}: only 8-bit binary PGM (P5) / PPM (P6) are read")
        width, height = int(fields[1]), int(fields[2])
        depth = 1 if fields[0] == b"P5" else 3
        image = np.frombuffer(fields[4][:width * height * depth], np.uint8).reshape(height, width, depth)
        image = image.transpose(2, 0, 1)
    else:
        try:
            from PIL import Image
        except ImportError:
            raise ValueError(f"{path}: without Pillow only .npy, .pgm and .ppm images are read") from None
        with Image.open(path) as opened:
            image = np.asarray(opened.convert("L" if channels == 1 else "RGB"))
        image = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim == 3 and image.shape[-1] in (1, 3) and image.shape[0] not in (1, 3):
        image = image.transpose(2, 0, 1)  # HWC -> CHW
    if image.dtype != np.uint8 or image.shape[1:] != (32, 32):
        raise ValueError(f"{path}: expected a uint8 32x32 image, got {image.dtype} {tuple(image.shape)}")
    if image.shape[0] != channels:
        image = image.mean(0, keepdims=True).astype(np.uint8) if channels == 1 else np.repeat(image[:1], 3, 0)
    return image


def _input_shape(model: Backend, batch: int) -> tuple[int, ...]:
    if isinstance(model, OnnxRuntimeBackend):
        dims = model.session.get_inputs()[0].shape[1:]
    else:
        dims = [int(d) for d in model.input["shape"][1:]]
        if model.layout == "NHWC":
            dims = [dims[2], dims[0], dims[1]]
    return (batch, *[int(d) for d in dims])


def _artifact(manifest: dict, name: str | None) -> dict:
    artifacts = manifest["artifacts"]
    if name is None:
        return artifacts[0]
    for artifact in artifacts:
        if artifact["file"] == os.path.basename(name):
            return artifact
    raise ValueError(f"{name} is not a model file of this bundle; it has {', '.join(a['file'] for a in artifacts)}")


def _exit_when_stdin_closes() -> None:
    """Watch stdin from a daemon thread and end the process when it reaches EOF. Over SSH, stdin is the channel
    that started us: when the connection drops or the caller is killed, sshd closes it, and we stop instead of
    running on, unseen, on the device."""
    import threading

    def watch():
        try:  # the raw descriptor: a daemon thread blocked in sys.stdin's buffer would crash interpreter shutdown
            while os.read(0, 4096):
                pass
        except (OSError, ValueError):
            pass
        os._exit(75)

    threading.Thread(target=watch, name="exit-on-eof", daemon=True).start()


def main(argv=None) -> int:
    import argparse
    import json
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description="Run, check or time an exported classifier (numpy + its runtime).")
    parser.add_argument("--bundle", default=here, help="bundle folder (default: the folder of this file)")
    parser.add_argument("--exit-on-eof", action="store_true",
                        help="exit as soon as stdin closes (edgecnn bench over SSH: a dropped connection then "
                             "leaves nothing running on the device)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("verify", help="check every file's sha256 against manifest.json")
    evaluate = sub.add_parser("eval", help="accuracy of every model file (or --model) on the bundle's sample")
    evaluate.add_argument("--model", default=None)
    evaluate.add_argument("--threads", type=int, default=None)
    evaluate.add_argument("--limit", type=int, default=None, help="use only the first N sample images")
    predict = sub.add_parser("predict", help="top classes of one image")
    predict.add_argument("image")
    predict.add_argument("--model", default=None)
    predict.add_argument("--top", type=int, default=3)
    bench = sub.add_parser("bench", help="latency percentiles and peak memory of one model file, as JSON")
    bench.add_argument("model", nargs="?", default=None,
                       help="a model file; inside a bundle, one of its files (default: the first)")
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--batch", type=int, default=1)
    bench.add_argument("--warmup", type=int, default=30)
    bench.add_argument("--runs", type=int, default=200)
    bench.add_argument("--layout", default=None, choices=("NCHW", "NHWC"))
    args = parser.parse_args(argv)
    if args.exit_on_eof:
        _exit_when_stdin_closes()
    try:
        in_bundle = os.path.isfile(os.path.join(args.bundle, "manifest.json"))
        if args.command == "bench" and not in_bundle:  # a bare file (edgecnn's host harness)
            if not args.model:
                raise ValueError("bench needs a model file outside a bundle")
            print(json.dumps(benchmark(args.model, args.threads, args.batch, args.warmup, args.runs,
                                       args.layout)))
            return 0
        manifest = verify_bundle(args.bundle)
        if args.command == "verify":
            print(f"ok: {len(manifest['files'])} files match manifest.json")
        elif args.command == "bench":
            artifact = _artifact(manifest, args.model)
            result = benchmark(os.path.join(args.bundle, artifact["file"]), args.threads, args.batch, args.warmup,
                               args.runs, args.layout or artifact.get("layout"))
            print(json.dumps(result))
        elif args.command == "eval":
            images = np.load(os.path.join(args.bundle, manifest["sample"]["images"]), allow_pickle=False)
            labels = np.load(os.path.join(args.bundle, manifest["sample"]["labels"]), allow_pickle=False)
            images, labels = images[:args.limit], labels[:args.limit]
            chosen = [_artifact(manifest, args.model)] if args.model else manifest["artifacts"]
            results = []
            for artifact in chosen:
                model = open_model(os.path.join(args.bundle, artifact["file"]), args.threads, artifact.get("layout"))
                top1 = np.concatenate([logits.argmax(1) for _, logits in predict_batches(
                    model, images, manifest["input"]["mean"], manifest["input"]["std"])])
                results.append({"file": artifact["file"], "images": int(len(labels)),
                                "accuracy": float((top1 == labels).mean()), "predictions": top1.tolist()})
            print(json.dumps({"machine": machine_info(), "versions": runtime_versions(), "results": results}))
        else:
            artifact = _artifact(manifest, args.model)
            image = load_image(args.image, manifest["input"]["shape"][1])
            model = open_model(os.path.join(args.bundle, artifact["file"]), 1, artifact.get("layout"))
            logits = model.predict(preprocess(image[None], manifest["input"]["mean"], manifest["input"]["std"]))[0]
            for k in np.argsort(-logits)[:args.top]:
                print(f"{manifest['classes'][k]}\t{logits[k]:.4f}")
    except (BundleError, OSError, ValueError, RuntimeError, KeyError) as error:
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"runner: error: {text}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
