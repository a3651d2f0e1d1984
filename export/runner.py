"""Run an exported classifier with numpy and one inference runtime: no edgecnn, and no torch but for ExecuTorch
files, whose runtime takes torch tensors.

This single file is what a device needs: edgecnn's export stage uses it to measure the accuracy of each file
*through its own runtime*, the benchmark harness times it, and deployment bundles ship a copy of it. It imports
only numpy and, lazily, the runtime a file needs (onnxruntime for .onnx, ai-edge-litert for .tflite, ncnn for
.ncnn, executorch for .pte, which alone also needs torch), so a board with only one of them installed can still
run that format's files.

Adding a runtime means adding one Backend subclass here and naming its file suffix in BACKENDS.

In a deployment bundle (export/bundle.py) it is also the command line: `python runner.py verify | eval |
predict IMAGE | bench`, each of which first checks every file's sha256 against manifest.json.

    from runner import open_model, preprocess
    model = open_model("model.int8.tflite", threads=2)
    logits = model.predict(preprocess(images_uint8_nchw, mean, std))
"""

from __future__ import annotations

import argparse
import json
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


class RunnerError(Exception):
    """Something the runner cannot do, said in one line (the command line prints it and exits 2)."""


class RuntimeMissing(RunnerError):
    """The runtime a file needs is not installed on this machine."""


def first_line(error: BaseException, limit: int = 240) -> str:
    """An exception's first line, shortened at a word boundary (never mid-word), with its type when it says nothing."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return text


class silenced_stderr:  # noqa: N801 - used as a context manager, like contextlib's
    """File descriptor 2 sent to /dev/null for a while: runtimes whose C++ side logs there (ExecuTorch) would
    otherwise break the one-line errors and the JSON-only output of this command line. Python exceptions are
    unaffected; they are raised after the descriptor is restored."""

    def __enter__(self):
        import sys

        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        return self

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        return False


class Backend(ABC):
    """One loaded model. predict() takes float32 NCHW, normalized, any batch size, and returns float32 logits,
    whatever the file's own input layout (`layout`: NCHW, or NHWC for channel-last TFLite files)."""

    runtime = ""

    def __init__(self, path: str, threads: int | None = None, layout: str | None = None):
        if layout not in (None, *LAYOUTS):
            raise RunnerError(f"layout must be NCHW or NHWC, not {layout!r}")
        self.path, self.threads, self.stated_layout = path, threads, layout
        self.layout = "NCHW"  # set from the file by each backend (_own_layout)

    def _own_layout(self, shape: list) -> str:
        """The layout the file's input shape shows, checked against the one the caller stated. edgecnn exports
        square images, so [N, S, S, C] with C != S is channel-last; anything else (also [N, S, S, S]) is NCHW."""
        dims = [d if isinstance(d, int) else 0 for d in shape]  # symbolic dimensions (ONNX's batch) count as 0
        own = "NHWC" if len(dims) == 4 and dims[1] == dims[2] > 0 and dims[3] != dims[2] else "NCHW"
        square = len(dims) == 4 and (dims[1] == dims[2] or dims[2] == dims[3])
        if self.stated_layout and not square:  # a file made elsewhere, not square: only its maker knows
            return self.stated_layout
        if self.stated_layout not in (None, own):
            raise RunnerError(f"{self.path} takes {own} input {list(shape)}, not {self.stated_layout}")
        return own

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1) if self.layout == "NHWC" else x, dtype=np.float32)
        try:
            return self._run(x)
        except Exception as error:  # noqa: BLE001 - runtimes raise their own classes; the caller gets one line
            raise RunnerError(f"{self.path}: {self.runtime} could not run a {list(x.shape)} input: "
                              f"{first_line(error)}") from error

    @staticmethod
    def _load(path: str, runtime: str, load):
        """`load()` with every runtime failure (a truncated, empty or foreign file) as one RunnerError."""
        try:
            return load()
        except Exception as error:  # noqa: BLE001 - onnxruntime's errors derive from Exception only
            raise RunnerError(f"{path} cannot be loaded by {runtime} (not a valid model file?): "
                              f"{first_line(error)}") from error

    @abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a float32 batch already in this file's layout."""

    @abstractmethod
    def invoker(self, x: np.ndarray):
        """A function that runs one inference on `x` (float32 NCHW, one batch of the file's size) with the input
        already laid out and quantized as the runtime takes it: the runtime's own work and nothing of numpy's."""

    @abstractmethod
    def io_details(self) -> dict:
        """{"input": ..., "output": ...}: shape, dtype and quantisation of the file's tensors, as its runtime sees
        them (what a bundle manifest records for people who load the file without this runner)."""

    @abstractmethod
    def input_shape(self) -> list[int]:
        """The file's input shape in NCHW order with batch 1 (a dynamic batch dimension read as 1)."""


class OnnxRuntimeBackend(Backend):
    runtime = "onnxruntime"

    def __init__(self, path: str, threads: int | None = None, layout: str | None = None):
        super().__init__(path, threads, layout)
        ort = import_runtime(".onnx", path)
        options = ort.SessionOptions()
        # One inter-op thread and sequential execution: a CNN is a chain, and parallel branches would only make
        # latency noisier. intra_op_num_threads=0 lets onnxruntime pick (one per core).
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = self._load(path, self.runtime, lambda: ort.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]))
        self.input_name = self.session.get_inputs()[0].name
        self.layout = self._own_layout(self.session.get_inputs()[0].shape)
        self.output_name = self.session.get_outputs()[0].name
        batch = self.session.get_inputs()[0].shape[0]
        self.batch = batch if isinstance(batch, int) and batch > 0 else None  # a fixed batch (files made elsewhere)

    def _run(self, x: np.ndarray) -> np.ndarray:
        step = self.batch or len(x)
        return np.concatenate([self.session.run([self.output_name], {self.input_name: x[i:i + step]})[0]
                               for i in range(0, len(x), step)]).astype(np.float32, copy=False)

    def invoker(self, x: np.ndarray):
        feed = {self.input_name: np.ascontiguousarray(x.transpose(0, 2, 3, 1) if self.layout == "NHWC" else x,
                                                      dtype=np.float32)}
        names = [self.output_name]
        return lambda: self.session.run(names, feed)

    def io_details(self) -> dict:
        def describe(tensor) -> dict:
            return {"name": tensor.name, "shape": [d if isinstance(d, int) else "N" for d in tensor.shape],
                    "dtype": "float32", "quantization": None}

        return {"input": describe(self.session.get_inputs()[0]), "output": describe(self.session.get_outputs()[0])}

    def input_shape(self) -> list[int]:
        shape = [d if isinstance(d, int) else 1 for d in self.session.get_inputs()[0].shape]
        return [1, *shape[1:]] if self.layout == "NCHW" else [1, shape[3], shape[1], shape[2]]


class LiteRTBackend(Backend):
    """ai-edge-litert (TFLite). Integer-quantized inputs and outputs are (de)quantized here with the tensors' own
    scale and zero point, so callers always see float; a fixed batch dimension is fed one slice at a time."""

    runtime = "litert"

    def __init__(self, path: str, threads: int | None = None, layout: str | None = None):
        super().__init__(path, threads, layout)
        Interpreter = import_runtime(".tflite", path).Interpreter

        def load():
            with silenced_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on every load
                interpreter = Interpreter(model_path=path, num_threads=threads or os.cpu_count() or 1)
                interpreter.allocate_tensors()
            return interpreter

        self.interpreter = self._load(path, self.runtime, load)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = int(self.input["shape"][0])
        self.layout = self._own_layout([int(d) for d in self.input["shape"]])

    def _run(self, x: np.ndarray) -> np.ndarray:
        outputs = [self._invoke(x[i:i + self.batch]) for i in range(0, len(x), self.batch)]
        return np.concatenate(outputs)

    def invoker(self, x: np.ndarray):
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1) if self.layout == "NHWC" else x, dtype=np.float32)
        self.interpreter.set_tensor(self.input["index"], self._quantized(x[:self.batch]))
        return self.interpreter.invoke

    def io_details(self) -> dict:
        def describe(detail) -> dict:
            scale, zero = detail["quantization"]
            return {"shape": [int(v) for v in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name,
                    "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None}

        return {"input": describe(self.input), "output": describe(self.output)}

    def input_shape(self) -> list[int]:
        shape = [int(d) for d in self.input["shape"]]
        return [1, *shape[1:]] if self.layout == "NCHW" else [1, shape[3], shape[1], shape[2]]

    def _quantized(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)
        return x

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], self._quantized(x))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        if np.issubdtype(self.output["dtype"], np.integer):
            scale, zero = self.output["quantization"]
            y = (y.astype(np.float32) - zero) * np.float32(scale)
        return y.astype(np.float32, copy=False)


#: ncnn options that store or compute in fp16/bf16 where the CPU has them; the runner turns them all off
NCNN_REDUCED_PRECISION = ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage")


class NcnnBackend(Backend):
    """ncnn. An edgecnn `.ncnn` file is a zip of ncnn's own pair (model.param, model.bin), loaded from memory;
    the Input layer states the shape (0=W 1=H 2=C). ncnn takes one CHW image per extractor, so a batch is fed one
    image at a time. int8 layers quantize their own input: callers always hand float."""

    runtime = "ncnn"

    def __init__(self, path: str, threads: int | None = None, layout: str | None = None):
        import zipfile

        super().__init__(path, threads, layout)
        ncnn = import_runtime(".ncnn", path)
        try:
            with zipfile.ZipFile(path) as archive:
                param, weights = archive.read("model.param").decode(), archive.read("model.bin")
                stated = json.loads(archive.read("edgecnn.json")) if "edgecnn.json" in archive.namelist() else {}
            self.precision = stated.get("precision", "fp32")
        except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, OSError, ValueError, AttributeError) as error:
            raise RunnerError(f"{path} is not an ncnn file of edgecnn's (a zip of model.param and model.bin): "
                              f"{first_line(error)}") from None
        try:
            lines = [line.split() for line in param.splitlines()[2:] if line.strip()]
            consumed = {blob for fields in lines for blob in fields[4:4 + int(fields[2])]}
            inputs = [fields for fields in lines if fields[0] == "Input"]
            outputs = [blob for fields in lines
                       for blob in fields[4 + int(fields[2]):4 + int(fields[2]) + int(fields[3])] if blob not in consumed]
            pairs = dict(pair.split("=", 1) for pair in inputs[0][5:] if "=" in pair) if inputs else {}
            self.shape = [1, int(pairs.get("2", 0)), int(pairs.get("1", 0)), int(pairs.get("0", 0))]
        except (ValueError, IndexError):
            raise RunnerError(f"{path}: its model.param is not an ncnn graph") from None
        if len(inputs) != 1 or len(outputs) != 1 or 0 in self.shape:
            raise RunnerError(f"{path}: an ncnn graph with {len(inputs)} inputs and {len(outputs)} outputs "
                              "(edgecnn runs classifiers with one of each, the input's shape stated)")
        self.input_name, self.output_name = inputs[0][4], outputs[0]
        self.layout = self._own_layout(self.shape)
        self.ncnn = ncnn

        def load():
            net = ncnn.Net()
            net.opt.use_vulkan_compute = False
            # full float unless the file is an fp16 one: ncnn's defaults store and compute in fp16 (or bf16) where
            # the CPU has it, which would make an fp32 file's numbers on a board differ from what export measured
            for option in NCNN_REDUCED_PRECISION:
                setattr(net.opt, option, self.precision == "fp16" and "fp16" in option)
            net.opt.num_threads = threads or os.cpu_count() or 1
            if net.load_param_mem(param) != 0:
                raise RunnerError("the graph (model.param) does not parse")
            net.load_model_mem(weights)
            return net

        self.net = self._load(path, self.runtime, load)

    def _one(self, image: np.ndarray) -> np.ndarray:
        extractor = self.net.create_extractor()
        extractor.input(self.input_name, self.ncnn.Mat(image))
        status, out = extractor.extract(self.output_name)
        if status != 0:
            raise RunnerError(f"ncnn returned status {status}")
        return np.array(out, dtype=np.float32).reshape(-1)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.stack([self._one(np.ascontiguousarray(image)) for image in x])

    def invoker(self, x: np.ndarray):
        image = np.ascontiguousarray(x[0], dtype=np.float32)
        return lambda: self._one(image)

    def io_details(self) -> dict:
        return {"input": {"shape": self.shape, "dtype": "float32", "quantization": None, "blob": self.input_name},
                "output": {"dtype": "float32", "quantization": None, "blob": self.output_name}}

    def input_shape(self) -> list[int]:
        return list(self.shape)


class ExecuTorchBackend(Backend):
    """ExecuTorch (.pte, XNNPACK delegate). Its Python bindings take and return torch tensors, so this backend
    alone needs torch on the device. Files are static at batch 1; a batch is fed one image at a time. The thread
    pool is the process's (ExecuTorch has one per process)."""

    runtime = "executorch"

    def __init__(self, path: str, threads: int | None = None, layout: str | None = None):
        super().__init__(path, threads, layout)
        with silenced_stderr():  # its C++ runtime logs CPU probing and thread-pool resets on stderr
            runtime = import_runtime(".pte", path)
            import torch  # noqa: PLC0415 - ExecuTorch's bindings take torch tensors (only .pte files need it)

            runtime._unsafe_reset_threadpool(threads or os.cpu_count() or 1)

            def load():
                module = runtime._load_for_executorch(path)
                return module, [int(d) for d in module.method_meta("forward").input_tensor_meta(0).sizes()]

            self.module, self.shape = self._load(path, self.runtime, load)
        self.torch = torch
        self.layout = self._own_layout(self.shape)

    def _one(self, image: np.ndarray) -> np.ndarray:
        with silenced_stderr():
            out = self.module.forward((self.torch.from_numpy(image),))[0]
        return out.numpy().astype(np.float32).reshape(1, -1)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self._one(np.ascontiguousarray(x[i:i + 1])) for i in range(len(x))])

    def invoker(self, x: np.ndarray):
        tensor = (self.torch.from_numpy(np.ascontiguousarray(x[:1], dtype=np.float32)),)
        return lambda: self.module.forward(tensor)

    def io_details(self) -> dict:
        return {"input": {"shape": self.shape, "dtype": "float32", "quantization": None},
                "output": {"dtype": "float32", "quantization": None}}

    def input_shape(self) -> list[int]:
        return [1, *self.shape[1:]]


BACKENDS = {".onnx": OnnxRuntimeBackend, ".tflite": LiteRTBackend, ".ncnn": NcnnBackend, ".pte": ExecuTorchBackend}
#: suffix -> the Python modules that provide its runtime (first found wins) and the pip package to install
RUNTIME_MODULES = {".onnx": (("onnxruntime",), "onnxruntime"),
                   ".tflite": (("ai_edge_litert.interpreter", "tflite_runtime.interpreter"), "ai-edge-litert"),
                   ".ncnn": (("ncnn",), "ncnn"),
                   ".pte": (("executorch.extension.pybindings.portable_lib",), "executorch")}


def import_runtime(suffix: str, path: str = ""):
    """The runtime module for a file suffix, imported only now: a board needs only the runtime of the files it
    runs. Missing, it is one line saying what to install."""
    import importlib

    modules, package = RUNTIME_MODULES[suffix]
    for name in modules:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise RuntimeMissing(f"{os.path.basename(path) or suffix + ' files'} needs {package}, which is not installed "
                         f"here: pip install {package}")


def runtime_installed(path: str) -> bool:
    """Whether the runtime a file needs can be imported here (checked without importing it)."""
    import importlib.util

    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in RUNTIME_MODULES:
        return False
    for name in RUNTIME_MODULES[suffix][0]:
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except (ImportError, ValueError):  # a parent package that is missing
            continue
    return False


def open_model(path: str, threads: int | None = None, layout: str | None = None) -> Backend:
    """Load a model file with the runtime its suffix names; `layout` None = the file's own (see Backend)."""
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in BACKENDS:
        raise RunnerError(f"{path}: no runtime for {suffix or 'a file without suffix'}; known: {', '.join(BACKENDS)}")
    if not os.path.isfile(path):
        raise RunnerError(f"model file not found: {path}")
    if os.path.getsize(path) == 0:
        raise RunnerError(f"{path} is empty (0 bytes), not a model file")
    if threads is not None and threads < 1:
        raise RunnerError(f"threads must be at least 1, not {threads}")
    return BACKENDS[suffix](str(path), threads, layout)


def top_k(logits: np.ndarray, k: int = 5) -> np.ndarray:
    """The indices of each row's k highest logits, highest first (all of them when there are fewer classes)."""
    return np.argsort(-logits, axis=1, kind="stable")[:, :min(k, logits.shape[1])]


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
    shape = (batch, *model.input_shape()[1:])
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


#: the marker an instruction counter watches for (devices/emulated/icount.c): lseek(-1, MARK + phase), which fails
#: harmlessly (EBADF) on any machine; phase 0 starts counting, 1 stops and reports
COUNT_MARK = 0x45444745434E4E00


def _mark(phase: int) -> None:
    try:
        os.lseek(-1, COUNT_MARK + phase, os.SEEK_SET)
    except OSError:
        pass


def count_region(path: str, runs: int, warmup: int = 3, layout: str | None = None) -> dict:
    """`runs` inferences of one file on one thread between the two counting markers, after `warmup` untimed ones.
    The count itself comes from the emulator (its plugin prints `edgecnn-icount N` on stderr); on a machine
    without one the markers do nothing. Only the runtime's invoke runs between them, on an input prepared once,
    so the count is the file's cost, not numpy's. The wall time is an emulator's, and says nothing of a board's."""
    import time

    model = open_model(path, 1, layout)
    x = np.random.default_rng(0).standard_normal((1, *model.input_shape()[1:])).astype(np.float32)
    invoke = model.invoker(x)
    for _ in range(warmup):
        invoke()
    started = time.perf_counter()
    _mark(0)
    for _ in range(runs):
        invoke()
    _mark(1)
    return {"file": os.path.basename(path), "runtime": model.runtime, "layout": model.layout, "threads": 1,
            "runs": runs, "warmup": warmup, "emulated_ms": round((time.perf_counter() - started) * 1e3 / runs, 3),
            "versions": runtime_versions(), "machine": machine_info(), "maps": _maps() if os.environ.get(
                "EDGECNN_ICOUNT_PROFILE") else None}


def _maps() -> list[list]:
    """This process's executable mappings (start, end, file offset, path): what a profile maps addresses with."""
    found = []
    try:
        with open("/proc/self/maps") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 6 and "x" in fields[1]:
                    start, end = (int(v, 16) for v in fields[0].split("-"))
                    found.append([start, end, int(fields[2], 16), fields[5]])
    except OSError:
        pass
    return found


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
    for package in ("onnxruntime", "ai-edge-litert", "tflite-runtime", "ncnn", "executorch"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


#: /proc/cpuinfo's "CPU part" of ARM's cores (implementer 0x41) -> the core's name
ARM_CORES = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510",
             "0xd47": "Cortex-A710", "0xd4b": "Cortex-A78C", "0xd0c": "Neoverse-N1", "0xd40": "Neoverse-V1",
             "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2"}


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
            "python": platform.python_version(), "cpus": os.cpu_count(), "cpu": ARM_CORES.get(cpu.lower(), cpu)}


class BundleError(RunnerError):
    """A bundle that must not run: missing or malformed manifest, missing or changed file."""


def verify_bundle(folder: str) -> dict:
    """Check every file listed in manifest.json against its sha256, and that each model file's own sha256 in
    `artifacts` is the one `files` lists; return the manifest."""
    import hashlib

    path = os.path.join(folder, "manifest.json")
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise BundleError(f"{folder} is not a bundle (no manifest.json)") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise BundleError(f"{path} is not valid JSON: {first_line(error)}") from None
    except OSError as error:
        raise BundleError(f"cannot read {path}: {error.strerror or error}") from None
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith("edgecnn-bundle/"):
        raise BundleError(f"{path} is not an edgecnn bundle manifest")
    files, artifacts = manifest.get("files"), manifest.get("artifacts")
    if not isinstance(files, dict) or not isinstance(artifacts, list) or not artifacts \
            or not all(isinstance(a, dict) and isinstance(a.get("file"), str) for a in artifacts):
        raise BundleError(f"{path} lacks its file list or its model files (a damaged manifest)")
    for name, expected in files.items():
        if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
            raise BundleError(f"manifest names {name!r}, which is not a file of the bundle folder")
        digest = hashlib.sha256()
        try:
            with open(os.path.join(folder, name), "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except FileNotFoundError:
            raise BundleError(f"bundle file {name} is missing") from None
        except OSError as error:
            raise BundleError(f"cannot read bundle file {name}: {error.strerror or error}") from None
        if digest.hexdigest() != expected:
            raise BundleError(f"bundle file {name} does not match its sha256 in manifest.json (changed or corrupt)")
    for artifact in artifacts:
        if artifact["file"] not in files:
            raise BundleError(f"manifest lists model file {artifact['file']!r} without a sha256 in its file list")
        if artifact.get("sha256") != files[artifact["file"]]:
            raise BundleError(f"manifest.json disagrees with itself: {artifact['file']}'s sha256 under artifacts "
                              "is not the one its file list holds (an edited manifest)")
    return manifest


def load_image(path: str, channels: int, size: tuple = (32, 32), pad_from: tuple | None = None) -> np.ndarray:
    """uint8 (C, H, W) of the bundle's `size` from .npy (HxW, HxWxC or CxHxW), binary .pgm/.ppm, or whatever PIL
    reads if it is installed. An image of `pad_from` size (a dataset that training padded, e.g. Fashion-MNIST's
    28x28) is padded with black exactly as training did; any other size is fitted: the largest centred crop of
    the bundle's aspect ratio, resized with an antialiased bilinear filter (fit_image)."""
    if not os.path.isfile(path):
        raise RunnerError(f"image not found: {path}")
    if path.endswith(".npy"):
        image = np.load(path, allow_pickle=False)
    elif path.endswith((".pgm", ".ppm")):
        with open(path, "rb") as handle:
            data = handle.read()
        fields = data.split(maxsplit=4)  # magic, width, height, maxval, pixels
        if len(fields) < 5 or fields[0] not in (b"P5", b"P6") or not all(f.isdigit() for f in fields[1:4]) \
                or int(fields[3]) > 255:
            raise RunnerError(f"{path}: only 8-bit binary PGM (P5) / PPM (P6) are read")
        width, height = int(fields[1]), int(fields[2])
        depth = 1 if fields[0] == b"P5" else 3
        if len(fields[4]) < width * height * depth:
            raise RunnerError(f"{path} is truncated: {width}x{height} needs {width * height * depth} bytes of pixels")
        image = np.frombuffer(fields[4][:width * height * depth], np.uint8).reshape(height, width, depth)
        image = image.transpose(2, 0, 1)
    else:
        try:
            from PIL import Image
        except ImportError:
            raise RunnerError(f"{path}: without Pillow only .npy, .pgm and .ppm images are read") from None
        with Image.open(path) as opened:
            image = np.asarray(opened.convert("L" if channels == 1 else "RGB"))
        image = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim == 3 and image.shape[-1] in (1, 3) and image.shape[0] not in (1, 3):
        image = image.transpose(2, 0, 1)  # HWC -> CHW
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3) or min(image.shape[1:]) < 1:
        raise RunnerError(f"{path}: expected a uint8 image (HxW, HxWxC or CxHxW with 1 or 3 channels), got "
                          f"{image.dtype} {tuple(image.shape)}")
    size = tuple(int(v) for v in size)
    if pad_from and image.shape[1:] == tuple(pad_from):
        top, left = (size[0] - pad_from[0]) // 2, (size[1] - pad_from[1]) // 2
        image = np.pad(image, ((0, 0), (top, size[0] - pad_from[0] - top), (left, size[1] - pad_from[1] - left)))
    elif image.shape[1:] != size:
        image = fit_image(image, size)
    if image.shape[0] != channels:
        image = image.mean(0, keepdims=True).astype(np.uint8) if channels == 1 else np.repeat(image[:1], 3, 0)
    return image


def fit_image(image: np.ndarray, size: tuple) -> np.ndarray:
    """uint8 (C, H, W) -> (C, *size): the largest centred crop with the target's aspect ratio, then a separable
    triangle (bilinear) filter whose support widens with the scale, so shrinking a photo averages its pixels
    instead of aliasing (what PIL's and torchvision's antialiased bilinear resize do)."""
    _, height, width = image.shape
    rows, cols = size
    if height * cols > width * rows:
        crop_h, crop_w = max(1, round(width * rows / cols)), width
    else:
        crop_h, crop_w = height, max(1, round(height * cols / rows))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    crop = image[:, top:top + crop_h, left:left + crop_w]

    def weights(n_in: int, n_out: int) -> np.ndarray:
        scale = n_in / n_out
        support = max(scale, 1.0)
        centres = (np.arange(n_out) + 0.5) * scale
        taps = np.clip(1 - np.abs(np.arange(n_in)[None, :] + 0.5 - centres[:, None]) / support, 0, None)
        return taps / taps.sum(1, keepdims=True)

    row_weights, col_weights = weights(crop_h, rows), weights(crop_w, cols)
    fitted = np.empty((len(crop), rows, cols))
    for channel, plane in enumerate(crop):  # columns in slices: a phone photo never becomes one float array
        shrunk = np.empty((rows, crop_w))
        for start in range(0, crop_w, 512):
            shrunk[:, start:start + 512] = row_weights @ plane[:, start:start + 512].astype(np.float64)
        fitted[channel] = shrunk @ col_weights.T
    return np.clip(np.rint(fitted), 0, 255).astype(np.uint8)


def _artifact(manifest: dict, name: str | None) -> dict:
    """The bundle's model file called `name`; without a name, the first one whose runtime is installed here."""
    artifacts = manifest["artifacts"]
    if name is None:
        for artifact in artifacts:
            if runtime_installed(artifact["file"]):
                return artifact
        missing = sorted({RUNTIME_MODULES[os.path.splitext(a["file"])[1]][1] for a in artifacts
                          if os.path.splitext(a["file"])[1] in RUNTIME_MODULES})
        raise RuntimeMissing(f"no runtime for any model file of this bundle is installed here: pip install "
                             f"{' or '.join(missing) or 'a runtime'}")
    for artifact in artifacts:
        if artifact["file"] == os.path.basename(name):
            return artifact
    raise RunnerError(f"{name} is not a model file of this bundle; it has {', '.join(a['file'] for a in artifacts)}")


def _load_sample(folder: str, manifest: dict, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    sample = manifest.get("sample") or {}
    try:
        images = np.load(os.path.join(folder, sample["images"]), allow_pickle=False)
        labels = np.load(os.path.join(folder, sample["labels"]), allow_pickle=False)
    except (KeyError, TypeError):
        raise BundleError("manifest.json names no sample images") from None
    except (OSError, ValueError) as error:
        raise BundleError(f"the bundle's sample cannot be read: {first_line(error)}") from None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
        raise BundleError("the bundle's sample is not uint8 (N, C, H, W) images with one label each")
    return images[:limit], labels[:limit]


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


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (`runner: error: ...`), like every other failure of the runner."""

    def error(self, message: str):
        import sys

        print(f"runner: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def text_table(headers: list[str], rows: list[list]) -> str:
    """Rows as aligned plain-text columns (the runner has no rich): numbers right-aligned, text left."""
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in cells[1:]) and len(cells) > 1 for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(row, widths, numeric)).rstrip()
             for row in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _is_number(text: str) -> bool:
    return text == "-" or text.rstrip("%").replace(".", "", 1).replace("-", "", 1).isdigit()


def _percent(value) -> str | None:
    return None if value is None else f"{100 * value:.2f}%"


def _machine_line(machine: dict, versions: dict) -> str:
    runtimes = ", ".join(f"{k} {v}" for k, v in versions.items())
    return (f"{machine['arch']} {machine['cpu'] or ''} ({machine['cpus']} CPUs), {machine['system']}, Python "
            f"{machine['python']}; {runtimes}").replace("  ", " ")


def _evaluate(args, manifest: dict) -> dict:
    """Accuracy of each chosen file on the bundle's sample, through its own runtime."""
    import sys

    images, labels = _load_sample(args.bundle, manifest, args.limit)
    if args.model:
        chosen = [_artifact(manifest, args.model)]
    else:  # every file this machine can run; the others are named, with what to install
        chosen = [a for a in manifest["artifacts"] if runtime_installed(a["file"])]
        if not chosen:
            _artifact(manifest, None)  # raises: which runtime to install
    results, skipped = [], []
    for artifact in manifest["artifacts"]:
        if artifact not in chosen:
            if not args.model:
                reason = f"needs {RUNTIME_MODULES[os.path.splitext(artifact['file'])[1]][1]}, not installed here"
                skipped.append({"file": artifact["file"], "reason": reason})
                print(f"runner: skipped {artifact['file']}: {reason}", file=sys.stderr)
            continue
        model = open_model(os.path.join(args.bundle, artifact["file"]), args.threads, artifact.get("layout"))
        ranked = np.concatenate([top_k(logits) for _, logits in predict_batches(
            model, images, manifest["input"]["mean"], manifest["input"]["std"])])
        top1, top5 = ranked[:, 0], (ranked == labels[:, None]).any(1)
        labelled = labels >= 0  # a bundle without a dataset has random images labelled -1
        results.append({"file": artifact["file"], "runtime": model.runtime, "images": int(len(labels)),
                        "accuracy": float((top1 == labels)[labelled].mean()) if labelled.any() else None,
                        "top5": float(top5[labelled].mean()) if labelled.any() else None,
                        "export_accuracy": artifact.get("export_accuracy"), "predictions": top1.tolist()})
    return {"machine": machine_info(), "versions": runtime_versions(), "results": results, "skipped": skipped}


def _print_evaluation(evaluated: dict, manifest: dict) -> None:
    results = evaluated["results"]
    images = results[0]["images"] if results else 0
    print(f"{manifest['model']} ({manifest['dataset']}): {images} sample images, on "
          f"{_machine_line(evaluated['machine'], evaluated['versions'])}")
    print(text_table(["file", "runtime", "top-1", "top-5", "top-1 at export"],
                     [[r["file"], r["runtime"], _percent(r["accuracy"]), _percent(r["top5"]),
                       _percent(r["export_accuracy"])] for r in results]))
    if any(a.get("export_accuracy") is not None for a in manifest["artifacts"]):
        print(f"(top-1 at export: the whole {manifest.get('export', {}).get('split', 'test')} split on the build "
              "machine; a small sample differs from it by chance)")


def _print_benchmark(result: dict) -> None:
    threads = result["threads"] or "runtime default"
    print(f"{result['file']} ({result['runtime']}, {result['layout']}), {threads} thread(s), batch {result['batch']}: "
          f"{result['runs']} timed runs after {result['warmup']} warm-up, on "
          f"{_machine_line(result['machine'], result['versions'])}")
    print(text_table(["p50 ms", "p90 ms", "p99 ms", "mean ms", "min ms", "load ms", "peak MiB"],
                     [[f"{result[k]:.3f}" for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms")]
                      + [f"{result['load_ms']:.1f}", f"{result['peak_rss_mib']:.1f}"]]))


def main(argv=None) -> int:
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    parser = _Parser(description="Run, check or time an exported classifier (numpy + its runtime). Output is a "
                                 "table for people; --json prints one JSON object for scripts.")
    parser.add_argument("--bundle", default=here, help="bundle folder (default: the folder of this file)")
    parser.add_argument("--exit-on-eof", action="store_true",
                        help="exit as soon as stdin closes (edgecnn bench over SSH: a dropped connection then "
                             "leaves nothing running on the device)")
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("verify", parents=[common], help="check every file's sha256 against manifest.json")
    evaluate = sub.add_parser("eval", parents=[common], help="accuracy of every model file whose runtime is "
                                                             "installed (or --model) on the bundle's sample")
    evaluate.add_argument("--model", default=None)
    evaluate.add_argument("--threads", type=_count(1), default=None)
    evaluate.add_argument("--limit", type=_count(1), default=None, help="use only the first N sample images")
    predict = sub.add_parser("predict", parents=[common], help="top classes of one image (28x28 Fashion-MNIST "
                                                               "images are padded, other sizes fitted)")
    predict.add_argument("image")
    predict.add_argument("--model", default=None)
    predict.add_argument("--top", type=_count(1), default=3)
    bench = sub.add_parser("bench", parents=[common], help="latency percentiles and peak memory of one model file")
    bench.add_argument("model", nargs="?", default=None,
                       help="a model file; inside a bundle, one of its files (default: the first whose runtime is "
                            "installed)")
    bench.add_argument("--threads", type=_count(1), default=None)
    bench.add_argument("--batch", type=_count(1), default=1)
    bench.add_argument("--warmup", type=_count(0), default=30)
    bench.add_argument("--runs", type=_count(1), default=200)
    bench.add_argument("--layout", default=None, choices=("NCHW", "NHWC"))
    count = sub.add_parser("count", parents=[common], help="run one model file between the instruction-counting "
                                                           "markers, one thread (an emulated board's counter "
                                                           "reports the instructions; always JSON)")
    count.add_argument("model", nargs="?", default=None)
    count.add_argument("--runs", type=_count(1), default=10)
    count.add_argument("--warmup", type=_count(0), default=3)
    args = parser.parse_args(argv)
    if args.exit_on_eof:
        _exit_when_stdin_closes()
    try:
        in_bundle = os.path.isfile(os.path.join(args.bundle, "manifest.json"))
        if args.command in ("bench", "count") and not in_bundle:  # a bare file (edgecnn's host harness)
            if not args.model:
                raise RunnerError(f"{args.command} needs a model file outside a bundle")
            if args.command == "count":
                print(json.dumps(count_region(args.model, args.runs, args.warmup)))
            else:
                result = benchmark(args.model, args.threads, args.batch, args.warmup, args.runs, args.layout)
                print(json.dumps(result)) if args.json else _print_benchmark(result)
            return 0
        manifest = verify_bundle(args.bundle)
        if args.command == "verify":
            count = len(manifest["files"])
            print(json.dumps({"ok": True, "files": count}) if args.json else f"ok: {count} files match manifest.json")
        elif args.command == "bench":
            artifact = _artifact(manifest, args.model)
            result = benchmark(os.path.join(args.bundle, artifact["file"]), args.threads, args.batch, args.warmup,
                               args.runs, args.layout or artifact.get("layout"))
            print(json.dumps(result)) if args.json else _print_benchmark(result)
        elif args.command == "count":
            artifact = _artifact(manifest, args.model)
            print(json.dumps(count_region(os.path.join(args.bundle, artifact["file"]), args.runs, args.warmup,
                                          artifact.get("layout"))))
        elif args.command == "eval":
            evaluated = _evaluate(args, manifest)
            if args.json:
                print(json.dumps(evaluated))
            else:
                _print_evaluation(evaluated, manifest)
        else:
            artifact = _artifact(manifest, args.model)
            shape = manifest["input"]["shape"]
            image = load_image(args.image, shape[1], tuple(shape[2:4]), manifest["input"].get("pad_from"))
            model = open_model(os.path.join(args.bundle, artifact["file"]), 1, artifact.get("layout"))
            logits = model.predict(preprocess(image[None], manifest["input"]["mean"], manifest["input"]["std"]))[0]
            top = [{"class": manifest["classes"][k], "index": int(k), "score": float(logits[k])}
                   for k in np.argsort(-logits)[:args.top]]
            if args.json:
                print(json.dumps({"file": artifact["file"], "image": args.image, "top": top}))
            else:
                activation = manifest.get("head_activation")
                print(f"{args.image} through {artifact['file']} ({model.runtime}); score: the model's output"
                      f"{f' (after its {activation})' if activation else ' (logit)'}")
                print(text_table(["rank", "class", "score"],
                                 [[rank, t["class"], f"{t['score']:.4f}"] for rank, t in enumerate(top, 1)]))
    except (RunnerError, OSError, ValueError, KeyError, TypeError) as error:
        print(f"runner: error: {first_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("runner: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
