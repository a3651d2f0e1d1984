"""ncnn (Tencent's runtime for ARM CPUs): fp32 through pnnx, int8 by ncnn's own post-training recipe.

- fp32: `torch.jit.trace`, then pnnx's converter binary (the one `pnnx.export` runs, called here directly so its
  exit status and messages are checked) writes ncnn's two files, `.param` (text graph) and `.bin` (weights), with
  fp32 weights (`fp16=0`).
- fp16: the fp32 file's conv and fully-connected weights rewritten as ncnn's float16 blocks (what ncnnoptimize's
  fp16 flag writes), and a third zip member, `edgecnn.json`, saying `"precision": "fp16"`: the runner then turns on
  ncnn's fp16 storage and arithmetic, which ncnn uses where the CPU has them (fp16 arithmetic: ARMv8.2 cores such
  as the Cortex-A76/A55, not the Pi 4's A72; x86 converts the weights to fp32 at load and computes in fp32).
- The file edgecnn writes, `model.*.ncnn`, is a plain zip holding both (`model.param`, `model.bin`), so one file
  carries one model through hashes, bundles and devices like every other format; `unzip` gives ncnn's usual pair,
  and the runner loads them from memory (`Net.load_param_mem` / `load_model_mem`). The Input layer states its
  shape (0=W 1=H 2=C), which pnnx leaves out.
- int8: the steps of ncnn's `ncnn2table` and `ncnn2int8`, which the pip wheel does not ship, written here on
  ncnn's file format: min-max activation scales from the calibration images run through the fp32 net, ACIQ weight
  scales per output channel (per group for grouped and depthwise convs; 6-bit for 3x3 stride-1 convs, as
  ncnn2table does for its int8 Winograd kernel), weights stored as int8, and requantize fused between consecutive
  int8 convs. ncnn runs an int8 layer's kernels from the scales in the file; everything else stays fp32.
- Layer fallback: every quantized layer is checked alone (its fp32 input fed to the int8 net at that layer, its
  output compared with the fp32 net's), and a layer whose relative error exceeds FALLBACK_ERROR is left in fp32.
  ncnn's int8 kernels for some grouped 1x1 convs compute wrong values on x86 (docs/export.md has the run); the
  export records which layers fell back and what they measured.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgecnn.errors import EdgecnnError
from edgecnn.io import atomic_write_bytes

from .runner import NCNN_REDUCED_PRECISION

MAGIC = "7767517"
PARAM_MEMBER, BIN_MEMBER, PRECISION_MEMBER = "model.param", "model.bin", "edgecnn.json"
QUANTIZABLE = ("Convolution", "ConvolutionDepthWise", "InnerProduct")
#: layer types that read nothing from the .bin; an int8 rewrite refuses a graph with any type it does not know
NO_WEIGHTS = frozenset({
    "Input", "Split", "Concat", "Reshape", "Permute", "Clip", "BinaryOp", "Pooling", "ReLU", "Sigmoid", "HardSigmoid",
    "HardSwish", "Swish", "Mish", "Flatten", "Eltwise", "ShuffleChannel", "Crop", "Slice", "Softmax", "Dropout",
    "Noop", "Interp", "TanH", "Reduction", "UnaryOp", "Squeeze", "ExpandDims", "Tile", "ELU", "GELU", "Pooling1D",
    "Pooling3D", "Packing", "Cast", "Quantize", "Dequantize", "Requantize", "AbsVal"})
#: a quantized layer whose output, computed alone from exact fp32 input, is further than this (relative L2) from
#: the fp32 layer's is kept in fp32. Working int8 layers measured 0.3-6 % on exp13; broken ones 60-140 %.
FALLBACK_ERROR = 0.25
FALLBACK_IMAGES = 32
#: why a layer is never quantized, whatever it measures: ncnn 1.0.20261020's int8 grouped convolution (a
#: ConvolutionDepthWise that is not depthwise) computes garbage (NaN, errors up to 1e10) when its output channels
#: per group are a multiple of 8, on some shapes differently on each run of one input (x86, one thread;
#: benchmarks/ncnn_grouped_int8.py), so one calibration pass can see it right and measuring it is not enough
UNSAFE_INT8 = "ncnn's int8 grouped convolution is wrong, on some shapes differently from run to run"
INT8_TAG, FP32_TAGS, FP16_TAG = 0x000D4B38, (0, 0x0002C056), 0x01306B47


@dataclass
class Layer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[str, str]  # ncnn's k=v pairs as written (arrays keep their -23300-k key)
    weights: list[bytes] = field(default_factory=list)  # the .bin blocks this layer reads, in order

    def param(self, key: int, default: int = 0) -> int:
        return int(float(self.params.get(str(key), default)))

    def weight_layout(self) -> tuple[int, bool]:
        """(weights, has bias) of a quantizable layer: InnerProduct keeps them under other keys than the convs."""
        if self.type == "InnerProduct":
            return self.param(2), bool(self.param(1))
        return self.param(6), bool(self.param(5))

    def is_grouped_convolution(self) -> bool:
        """A ConvolutionDepthWise with more than one input or output channel per group."""
        if self.type != "ConvolutionDepthWise":
            return False
        outputs, groups = self.param(0), max(1, self.param(7, 1))
        taps = self.param(1) * self.param(11, self.param(1))
        inputs = self.param(6) // groups // max(1, taps) // max(1, outputs // groups) * groups  # ncnn's own formula
        return not inputs == groups == outputs

    def line(self) -> str:
        pairs = " ".join(f"{k}={v}" for k, v in self.params.items())
        return (f"{self.type:<24} {self.name:<24} {len(self.bottoms)} {len(self.tops)} "
                f"{' '.join(self.bottoms + self.tops)} {pairs}").rstrip()


# --- the container --------------------------------------------------------------------------------------------

def write_container(path: str | Path, param: str, weights: bytes, precision: str | None = None) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(PARAM_MEMBER, param)
        archive.writestr(BIN_MEMBER, weights)
        if precision:  # only fp16 files carry it: it tells the runner to turn ncnn's fp16 options on
            archive.writestr(PRECISION_MEMBER, json.dumps({"precision": precision}))
    atomic_write_bytes(path, buffer.getvalue())


def read_container(path: str | Path) -> tuple[str, bytes]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(PARAM_MEMBER).decode(), archive.read(BIN_MEMBER)
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as error:
        raise EdgecnnError(f"{path} is not an edgecnn ncnn file (a zip of {PARAM_MEMBER} and {BIN_MEMBER}): "
                           f"{error}") from None


# --- the .param text ------------------------------------------------------------------------------------------

def parse_param(text: str) -> list[Layer]:
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [MAGIC] or len(lines[1]) != 2:
        raise EdgecnnError("not an ncnn .param text (magic 7767517 missing)")
    layers = []
    for fields in lines[2:]:
        kind, name, nb, nt = fields[0], fields[1], int(fields[2]), int(fields[3])
        blobs = fields[4:4 + nb + nt]
        params = dict(pair.split("=", 1) for pair in fields[4 + nb + nt:])
        layers.append(Layer(kind, name, blobs[:nb], blobs[nb:], params))
    return layers


def render_param(layers: list[Layer]) -> str:
    blobs = {blob for layer in layers for blob in layer.bottoms + layer.tops}
    return "\n".join([MAGIC, f"{len(layers)} {len(blobs)}", *(layer.line() for layer in layers)]) + "\n"


def io_blobs(layers: list[Layer]) -> tuple[str, str]:
    """(input blob, output blob): the Input layer's top, and the one blob produced that nothing consumes."""
    inputs = [layer.tops[0] for layer in layers if layer.type == "Input"]
    consumed = {blob for layer in layers for blob in layer.bottoms}
    outputs = [blob for layer in layers for blob in layer.tops if blob not in consumed]
    if len(inputs) != 1 or len(outputs) != 1:
        raise EdgecnnError(f"an ncnn graph with {len(inputs)} inputs and {len(outputs)} outputs; edgecnn runs "
                           "classifiers with one of each")
    return inputs[0], outputs[0]


# --- the .bin, walked layer by layer --------------------------------------------------------------------------

def _weight_block(data: bytes, offset: int, count: int) -> tuple[bytes, int]:
    """One tagged weight block (ModelBin type 0) starting at offset: (its bytes, tag included; next offset)."""
    (tag,) = struct.unpack_from("<I", data, offset)
    if tag in FP32_TAGS:
        size = 4 + 4 * count
    elif tag == INT8_TAG:
        size = 4 + (count + 3) // 4 * 4
    elif tag == FP16_TAG:
        size = 4 + (2 * count + 3) // 4 * 4
    else:
        raise EdgecnnError(f"ncnn weight block with tag {tag:#x}: edgecnn reads fp32, fp16 and int8 blocks only")
    return data[offset:offset + size], offset + size


def _raw(data: bytes, offset: int, count: int) -> tuple[bytes, int]:
    return data[offset:offset + 4 * count], offset + 4 * count


def split_weights(layers: list[Layer], data: bytes) -> None:
    """Attach each layer's .bin blocks (the layout of ncnn's own load_model for each layer type)."""
    offset = 0
    for layer in layers:
        p = layer.param
        blocks = []
        if layer.type in QUANTIZABLE:
            count, bias = layer.weight_layout()
            block, offset = _weight_block(data, offset, count)
            blocks.append(block)
            if bias:
                block, offset = _raw(data, offset, p(0))
                blocks.append(block)
            term = p(8)
            if term:
                scales = p(0) if layer.type != "ConvolutionDepthWise" else (p(7, 1) if term % 100 == 1 else 1)
                for count in (scales, 1) + ((1,) if term > 100 else ()):
                    block, offset = _raw(data, offset, count)
                    blocks.append(block)
        elif layer.type == "MemoryData":
            count = max(p(0), 1) * max(p(1), 1) * max(p(11), 1) * max(p(2), 1)
            block, offset = _weight_block(data, offset, count) if p(21, 1) == 0 else _raw(data, offset, count)
            blocks.append(block)
        elif layer.type == "BatchNorm":
            for _ in range(4):
                block, offset = _raw(data, offset, p(0))
                blocks.append(block)
        elif layer.type in ("Scale", "PReLU"):
            block, offset = _raw(data, offset, p(0))
            blocks.append(block)
            if layer.type == "Scale" and p(1):
                block, offset = _raw(data, offset, p(0))
                blocks.append(block)
        elif layer.type not in NO_WEIGHTS:
            raise EdgecnnError(f"ncnn layer {layer.name} of type {layer.type}: edgecnn does not know its weight "
                               "layout, so it cannot rewrite this graph for int8")
        if len(data) < offset:
            raise EdgecnnError(f"the ncnn .bin ends inside layer {layer.name}'s weights (a truncated file?)")
        layer.weights = blocks
    if offset != len(data):
        raise EdgecnnError(f"the ncnn .bin holds {len(data) - offset} bytes no layer reads (a mismatched .param?)")


def _floats(block: bytes, tagged: bool) -> np.ndarray:
    (tag,) = struct.unpack_from("<I", block, 0) if tagged else (0,)
    if tagged and tag not in FP32_TAGS:
        raise EdgecnnError("an ncnn layer whose weights are already quantized")
    return np.frombuffer(block[4:] if tagged else block, dtype="<f4")


# --- fp32 -----------------------------------------------------------------------------------------------------

def export_fp32(model: torch.nn.Module, path: str | Path, in_chans: int) -> dict:
    import pnnx

    model = model.eval()
    example = torch.zeros(1, in_chans, 32, 32)
    with tempfile.TemporaryDirectory(prefix="edgecnn-pnnx-") as tmp:
        traced = Path(tmp) / "model.pt"
        with torch.no_grad(), warnings.catch_warnings():
            # pnnx reads TorchScript; torch's deprecation notice for it is nothing a user of this export can act on
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=FutureWarning)
            torch.jit.trace(model, example, check_trace=False).save(str(traced))
        outputs = {key: str(Path(tmp) / name) for key, name in (
            ("ncnnparam", "m.param"), ("ncnnbin", "m.bin"), ("pnnxparam", "m.pnnx.param"), ("pnnxbin", "m.pnnx.bin"),
            ("pnnxpy", "m_pnnx.py"), ("pnnxonnx", "m.pnnx.onnx"), ("ncnnpy", "m_ncnn.py"))}
        command = [pnnx.EXEC_PATH, str(traced), f"inputshape=[1,{in_chans},32,32]f32", "device=cpu", "fp16=0",
                   *(f"{key}={value}" for key, value in outputs.items())]
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp, timeout=600)
        if done.returncode != 0 or not Path(outputs["ncnnparam"]).is_file():
            tail = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()][-3:]
            raise EdgecnnError(f"pnnx failed (exit {done.returncode}): {' | '.join(tail)}")
        layers = parse_param(Path(outputs["ncnnparam"]).read_text())
        weights = Path(outputs["ncnnbin"]).read_bytes()
    for layer in layers:
        if layer.type == "Input":  # state the input shape, which pnnx leaves out (the runner reads it here)
            layer.params.update({"0": "32", "1": "32", "2": str(in_chans)})
    split_weights(layers, weights)  # refuses a graph whose weights do not add up, before anything is written
    write_container(path, render_param(layers), weights)
    return {"converter": "pnnx", "layers": len(layers), "batch": 1, "layout": "NCHW", "input_dtype": "float32"}


# --- fp16 -----------------------------------------------------------------------------------------------------

def fp16_block(block: bytes) -> bytes:
    """A tagged fp32 weight block as ncnn's float16 block (tag, values, zero padding to 4 bytes)."""
    values = _floats(block, tagged=True).astype("<f2").tobytes()
    return struct.pack("<I", FP16_TAG) + values + b"\0" * (-len(values) % 4)


def convert_fp16(fp32_path: str | Path, path: str | Path) -> dict:
    """The fp32 file with every conv/fully-connected weight block (and tagged MemoryData) stored as float16;
    biases and BatchNorm terms stay fp32, as ncnn reads them."""
    param, weights = read_container(fp32_path)
    layers = parse_param(param)
    split_weights(layers, weights)
    converted = 0
    for layer in layers:
        if layer.type in QUANTIZABLE or (layer.type == "MemoryData" and layer.param(21, 1) == 0):
            layer.weights[0] = fp16_block(layer.weights[0])
            converted += 1
    write_container(path, param, b"".join(block for layer in layers for block in layer.weights), "fp16")
    return {"converter": "pnnx, weights rewritten as ncnn float16 blocks", "layers_fp16": converted, "batch": 1,
            "layout": "NCHW", "input_dtype": "float32",
            "runtime_options": "use_fp16_storage, use_fp16_packed, use_fp16_arithmetic (where the CPU has them)"}


# --- int8 -----------------------------------------------------------------------------------------------------

def aciq_clip(absmax: float, count: int, bits: int = 8) -> float:
    """ncnn2table's compute_aciq_gaussian_clip: the clipping threshold of a Gaussian with this range and size."""
    alpha = (0, 1.71063519, 2.15159277, 2.55913646, 2.93620062, 3.28691474, 3.6151146, 3.92403714)
    gaussian = (0.5 * 0.35) * (1 + np.sqrt(np.pi * np.log(4)))
    with np.errstate(divide="ignore"):  # one weight per row (a 1x1 conv of one channel): ncnn's scale 0, kept
        std = (absmax * 2 * gaussian) / np.sqrt(2 * np.log(count))  # so; the layer check then keeps it fp32
    return float(alpha[bits - 1] * std)


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)  # C's round(), as ncnn's float2int8 uses


def weight_scales(layer: Layer) -> np.ndarray:
    """Per output channel (per group for ConvolutionDepthWise) scales, as ncnn2table's ACIQ method sets them."""
    weights = _floats(layer.weights[0], tagged=True)
    rows = layer.param(7, 1) if layer.type == "ConvolutionDepthWise" else layer.param(0)
    per_row = weights.reshape(rows, -1)
    absmax = np.abs(per_row).max(axis=1)
    p = layer.param
    six_bit = layer.type == "Convolution" and p(1) == 3 and p(11, p(1)) == 3 and p(2, 1) == 1 \
        and p(12, p(2, 1)) == 1 and p(3, 1) == 1 and p(13, p(3, 1)) == 1
    bits, top = (6, 31) if six_bit else (8, 127)
    return np.array([top / aciq_clip(a, per_row.shape[1], bits) if a > 0 else 1.0 for a in absmax], np.float32)


def _net(param: str, weights: bytes, threads: int = 1):
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    for option in NCNN_REDUCED_PRECISION:
        setattr(net.opt, option, False)  # as the runner runs the files
    net.opt.num_threads = threads
    if net.load_param_mem(param) != 0:
        raise EdgecnnError("ncnn refused the .param text")
    net.load_model_mem(weights)
    return net


def _extract(net, feeds: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
    import ncnn

    extractor = net.create_extractor()
    extractor.set_light_mode(False)  # keep every intermediate blob: several are read from one run
    for blob, value in feeds.items():
        extractor.input(blob, ncnn.Mat(np.ascontiguousarray(value, dtype=np.float32)))
    found = []
    for name in names:
        status, mat = extractor.extract(name)
        if status != 0:
            raise EdgecnnError(f"ncnn could not compute blob {name} (status {status})")
        found.append(np.array(mat, dtype=np.float32, copy=True))
    return found


def quantized_graph(layers: list[Layer], blob_scales: dict[str, float], keep_fp32: set[str], fuse: bool = True
                    ) -> tuple[str, bytes]:
    """(param, bin) of `layers` with every quantizable layer outside keep_fp32 in int8 (ncnn2int8's rewrite)."""
    out = []
    for layer in layers:
        layer = Layer(layer.type, layer.name, layer.bottoms, layer.tops, dict(layer.params), list(layer.weights))
        if layer.type in QUANTIZABLE and layer.name not in keep_fp32 and layer.name in blob_scales:
            scales = weight_scales(layer)
            weights = _floats(layer.weights[0], tagged=True)
            rows = weights.reshape(len(scales), -1)
            q = np.clip(_round_half_away(rows * scales[:, None]), -127, 127).astype(np.int8).tobytes()
            q += b"\0" * ((-len(q)) % 4)
            blocks = [struct.pack("<I", INT8_TAG) + q, *layer.weights[1:1 + layer.weight_layout()[1]]]
            blocks += [scales.astype("<f4").tobytes(), np.float32(blob_scales[layer.name]).astype("<f4").tobytes()]
            layer.params["8"] = "1" if layer.type == "ConvolutionDepthWise" else "2"
            layer.weights = blocks
        out.append(layer)
    if fuse:
        _fuse_requantize(out)
    return render_param(out), b"".join(block for layer in out for block in layer.weights)


def _fuse_requantize(layers: list[Layer]) -> None:
    """ncnn2int8's fuse_requantize: an int8 conv whose only consumer (directly, or every branch of a Split) is an
    int8 conv hands it int8 values, requantized with the consumer's input scale."""
    consumers: dict[str, list[Layer]] = {}
    for layer in layers:
        for blob in layer.bottoms:
            consumers.setdefault(blob, []).append(layer)
    convs = ("Convolution", "ConvolutionDepthWise")

    def int8_conv(layer: Layer) -> bool:
        return layer.type in convs and len(layer.bottoms) == 1 and layer.param(8) in (1, 2)

    for layer in layers:
        if not int8_conv(layer):
            continue
        users = consumers.get(layer.tops[0], [])
        if len(users) == 1 and users[0].type == "Split":
            branches = [consumers.get(top, []) for top in users[0].tops]
            users = [branch[0] for branch in branches if len(branch) == 1]
            if len(users) != len(branches):
                continue
        if users and all(int8_conv(user) for user in users):
            layer.params["8"] = str(layer.param(8) + 100)
            layer.weights.append(users[0].weights[-1])  # the consumer's bottom blob scale


def export_int8(fp32_path: str | Path, path: str | Path, calibration: np.ndarray, on_batch=None,
                fallback: bool = True) -> dict:
    """int8 ncnn file from an fp32 one, calibrated on `calibration` (float32 NCHW, normalized, as the runner feeds)."""
    param, weights = read_container(fp32_path)
    layers = parse_param(param)
    split_weights(layers, weights)
    input_blob, _ = io_blobs(layers)
    net = _net(param, weights)
    targets = [layer for layer in layers if layer.type in QUANTIZABLE]
    blob_scales = activation_scales(layers, net, calibration, input_blob, on_batch)
    unsafe = {layer.name for layer in targets if layer.is_grouped_convolution()}
    errors = layer_errors(layers, net, blob_scales, calibration[:FALLBACK_IMAGES], input_blob) if fallback else {}
    keep = unsafe | {name for name, error in errors.items() if not error <= FALLBACK_ERROR}  # NaN falls back too
    final_param, final_bin = quantized_graph(layers, blob_scales, keep)
    write_container(path, final_param, final_bin)
    details = {"converter": "pnnx + ncnn int8 (ncnn2table and ncnn2int8 steps)", "batch": 1, "layout": "NCHW",
               "input_dtype": "float32", "weights": "int8 per-channel (per group for grouped convs)",
               "calibration": "minmax activations, ACIQ weights", "calibration_images": len(calibration),
               "int8_layers": len(targets) - len(keep), "fp32_fallback_layers": sorted(keep),
               "fp32_unsafe_layers": sorted(unsafe), "unsafe_reason": UNSAFE_INT8 if unsafe else None,
               "fallback_threshold": FALLBACK_ERROR if fallback else None,
               "largest_int8_layer_error": round(max((e for n, e in errors.items() if n not in keep), default=0.0), 4)}
    if keep:
        details["fallback_errors"] = {name: round(errors[name], 4) if np.isfinite(errors[name]) else "not finite"
                                      for name in sorted(keep) if name in errors}
        details["all_int8_agreement_on_calibration"] = _agreement(layers, net, blob_scales, set(),
                                                                  calibration[:200], input_blob)
        details["agreement_on_calibration"] = _agreement(layers, net, blob_scales, keep, calibration[:200],
                                                         input_blob)
    return details


def activation_scales(layers: list[Layer], net, calibration: np.ndarray, input_blob: str, on_batch=None
                      ) -> dict[str, float]:
    """Each quantizable layer's input scale, 127 / the largest |value| its input blob takes on the calibration images.

    Min-max, not ncnn2table's ACIQ clip of activations: that clip cost 13 points of top-1 agreement on the test
    model (docs/export.md); its weight clip cost nothing and is kept (weight_scales)."""
    targets = [layer for layer in layers if layer.type in QUANTIZABLE]
    bottoms = sorted({layer.bottoms[0] for layer in targets})
    absmax = dict.fromkeys(bottoms, 0.0)
    for index, image in enumerate(calibration):
        for blob, value in zip(bottoms, _extract(net, {input_blob: image}, bottoms), strict=True):
            absmax[blob] = max(absmax[blob], float(np.abs(value).max()))
        if on_batch and (index + 1) % 50 == 0:
            on_batch(50)
    if on_batch:
        on_batch(len(calibration) % 50)
    return {layer.name: 127 / absmax[layer.bottoms[0]] if absmax[layer.bottoms[0]] > 0 else 1.0 for layer in targets}


def layer_errors(layers: list[Layer], net, blob_scales: dict[str, float], images: np.ndarray, input_blob: str
                 ) -> dict[str, float]:
    """Relative L2 error of each int8 layer computed alone: the fp32 net's input to it fed to the int8 net at that
    blob (ncnn then runs only that layer), compared with the fp32 net's output of it."""
    targets = [layer for layer in layers if layer.type in QUANTIZABLE]
    int8_net = _net(*quantized_graph(layers, blob_scales, set(), fuse=False))
    names = sorted({blob for layer in targets for blob in (layer.bottoms[0], layer.tops[0])})
    squared = {layer.name: [0.0, 0.0] for layer in targets}
    for index, image in enumerate(images):
        values = dict(zip(names, _extract(net, {input_blob: image}, names), strict=True))
        for layer in targets:
            (got,) = _extract(int8_net, {layer.bottoms[0]: values[layer.bottoms[0]]}, [layer.tops[0]])
            if index == 0:  # a kernel that reads unwritten memory answers one input two ways: never keep it int8
                (again,) = _extract(int8_net, {layer.bottoms[0]: values[layer.bottoms[0]]}, [layer.tops[0]])
                if not np.array_equal(got, again, equal_nan=True):
                    squared[layer.name] = [np.inf, 1.0]
            expected = values[layer.tops[0]].astype(np.float64)  # a broken layer's output can overflow float32 squares
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf in a broken layer's output is its error
                squared[layer.name][0] += float(((got - expected) ** 2).sum())
            squared[layer.name][1] += float((expected ** 2).sum())
    return {name: (err / ref) ** 0.5 if ref > 0 else 0.0 for name, (err, ref) in squared.items()}


def _agreement(layers, net, blob_scales, keep, images, input_blob) -> float:
    _, output_blob = io_blobs(layers)
    int8_net = _net(*quantized_graph(layers, blob_scales, keep))
    same = [int(_extract(net, {input_blob: x}, [output_blob])[0].argmax()
                == _extract(int8_net, {input_blob: x}, [output_blob])[0].argmax()) for x in images]
    return round(float(np.mean(same)), 4)


def count_ops(path: str | Path) -> int:
    """Layers of the graph, its Input and Split layers (ncnn's blob fan-out, no computation) not counted."""
    return sum(layer.type not in ("Input", "Split") for layer in parse_param(read_container(path)[0]))
