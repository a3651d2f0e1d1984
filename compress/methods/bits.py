"""Simulated fixed-point quantization at any bit width: the ResNet-18/VGG-16 study's accuracy-versus-bits table
(its code follows pytorch-playground's quantizers), for any trained run.

Each setting quantizes the weights, the activations, or both, to `bits` bits and measures top-1 and top-5 on the
whole test split in float arithmetic (fake quantization): what a fixed-point implementation at that width would
compute, not a file any runtime runs. The settings are information for choosing a width; the deployable int8
files come from `edgecnn export --int8`.

Quantizers (x is one tensor, or one output channel of a weight with per-channel granularity):
- **linear**: 2^bits evenly spaced levels over [lo, hi], x clipped to that range first (pytorch-playground's
  min_max_quantize). The range is the tensor's min and max (`minmax`) or its 0.01th and 99.99th percentiles
  (`percentile`: a few outliers no longer stretch every step).
- **log**: the sign kept, the magnitude quantized in the log domain with bits - 1 bits over the range of
  log|x| (pytorch-playground's log_minmax_quantize); zeros stay zero (a ReLU's many zeros would otherwise set the
  range's floor at log(1e-20)).

Activations are the inputs of every convolution and linear layer, each with one range (per tensor) calibrated on
training images before anything is measured. Weights are every conv and linear weight, per tensor or per output
channel; biases stay float (they are 32-bit accumulators in fixed-point hardware). With `fold`, each BatchNorm is
folded into the conv before it first, so the weights quantized are those a deployed file holds.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgecnn.errors import EdgecnnError

QUANTIZERS = ("linear", "log")
RANGES = ("minmax", "percentile")
TARGETS = ("weights", "activations", "both")
GRANULARITIES = ("per-tensor", "per-channel")
DEFAULT_BITS = (16, 12, 10, 8, 6, 5, 4, 3, 2)
PERCENTILE = 99.99
#: values kept per layer per calibration batch for the percentile range (torch.quantile's input is bounded)
_SAMPLE = 20_000


def quantize_linear(x: torch.Tensor, bits: int, lo: torch.Tensor | float, hi: torch.Tensor | float) -> torch.Tensor:
    """x clipped to [lo, hi] and rounded to the nearest of 2^bits evenly spaced levels from lo to hi (lo and hi
    are levels themselves). lo == hi leaves the clipped value (a constant tensor needs no step)."""
    lo, hi = torch.as_tensor(lo, dtype=x.dtype), torch.as_tensor(hi, dtype=x.dtype)
    step = (hi - lo) / (2 ** bits - 1)
    clipped = torch.minimum(torch.maximum(x, lo), hi)
    safe = torch.where(step > 0, step, torch.ones_like(step))
    return torch.where(step > 0, torch.round((clipped - lo) / safe) * safe + lo, clipped)


def quantize_log(x: torch.Tensor, bits: int, lo: torch.Tensor | float, hi: torch.Tensor | float) -> torch.Tensor:
    """sign(x) * exp(q(log|x|)), q linear with bits - 1 bits over [lo, hi] (a range of log-magnitudes); zeros stay
    zero."""
    magnitude = x.abs()
    nonzero = magnitude > 0
    logs = torch.log(torch.where(nonzero, magnitude, torch.ones_like(magnitude)))
    quantized = torch.exp(quantize_linear(logs, max(bits - 1, 1), lo, hi))
    return torch.where(nonzero, torch.sign(x) * quantized, torch.zeros_like(x))


def value_range(values: torch.Tensor, quantizer: str, range_kind: str, dim: int | None = None):
    """(lo, hi) of `values` as the quantizer reads it (log: of the nonzero log-magnitudes), over all of it or per
    index of `dim` (shaped to broadcast against `values`)."""
    if quantizer == "log":
        magnitude = values.abs()
        values = torch.log(torch.where(magnitude > 0, magnitude, torch.full_like(magnitude, float("nan"))))
    flat = values.transpose(0, dim).reshape(values.shape[dim], -1) if dim is not None else values.reshape(1, -1)
    if range_kind == "percentile":
        lo = torch.nanquantile(flat.double(), 1 - PERCENTILE / 100, dim=1).to(values.dtype)
        hi = torch.nanquantile(flat.double(), PERCENTILE / 100, dim=1).to(values.dtype)
    else:
        finite = torch.nan_to_num(flat, nan=math.inf)
        lo = finite.min(dim=1).values
        hi = torch.nan_to_num(flat, nan=-math.inf).max(dim=1).values
    lo, hi = torch.nan_to_num(lo, posinf=0.0, neginf=0.0), torch.nan_to_num(hi, posinf=0.0, neginf=0.0)
    if dim is None:
        return lo.squeeze(0), hi.squeeze(0)
    shape = [1] * values.dim()
    shape[dim] = -1
    return lo.reshape(shape), hi.reshape(shape)


QUANTIZE: dict[str, Callable] = {"linear": quantize_linear, "log": quantize_log}


@dataclass(frozen=True)
class Setting:
    target: str  # weights, activations or both
    bits: int

    @property
    def weight_bits(self) -> int:
        return self.bits if self.target in ("weights", "both") else 32

    @property
    def activation_bits(self) -> int:
        return self.bits if self.target in ("activations", "both") else 32


def quantized_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def quantize_weights(model: nn.Module, bits: int, quantizer: str, range_kind: str, granularity: str) -> None:
    """Every conv and linear weight of `model` replaced by its quantized value, in place."""
    with torch.no_grad():
        for layer in quantized_layers(model):
            weight = layer.weight
            lo, hi = value_range(weight, quantizer, range_kind, 0 if granularity == "per-channel" else None)
            weight.copy_(QUANTIZE[quantizer](weight, bits, lo, hi))


def calibrate_activations(model: nn.Module, batches, quantizer: str, range_kind: str) -> dict[nn.Module, tuple]:
    """The (lo, hi) of every conv and linear layer's input over `batches` (an iterable of normalized inputs)."""
    seen: dict[nn.Module, list] = {}
    generator = torch.Generator().manual_seed(0)

    def record(layer, args):
        x = args[0].detach()
        if range_kind == "minmax":
            lo, hi = value_range(x, quantizer, "minmax")
            old = seen.get(layer)
            seen[layer] = [torch.minimum(old[0], lo), torch.maximum(old[1], hi)] if old else [lo, hi]
        else:
            flat = x.reshape(-1)
            pick = torch.randint(len(flat), (min(_SAMPLE, len(flat)),), generator=generator)
            seen.setdefault(layer, []).append(flat[pick])

    handles = [layer.register_forward_pre_hook(record) for layer in quantized_layers(model)]
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for handle in handles:
            handle.remove()
    if range_kind == "minmax":
        return {layer: tuple(bounds) for layer, bounds in seen.items()}
    return {layer: value_range(torch.cat(samples), quantizer, "percentile") for layer, samples in seen.items()}


def quantize_activations(model: nn.Module, ranges: dict, bits: int, quantizer: str) -> list:
    """Hooks that quantize each calibrated layer's input; remove them to undo."""
    def hook(layer, args):
        lo, hi = ranges[layer]
        return (QUANTIZE[quantizer](args[0], bits, lo, hi), *args[1:])

    return [layer.register_forward_pre_hook(hook) for layer in quantized_layers(model) if layer in ranges]


def check_settings(bits: list[int], targets: list[str], quantizer: str, range_kind: str, granularity: str) -> None:
    if not bits or any(not 2 <= b <= 16 for b in bits):
        raise EdgecnnError(f"--bits takes widths from 2 to 16, not {', '.join(map(str, bits)) or 'nothing'}")
    for value, known, option in ((quantizer, QUANTIZERS, "--quantizer"), (range_kind, RANGES, "--range"),
                                 (granularity, GRANULARITIES, "--granularity")):
        if value not in known:
            raise EdgecnnError(f"unknown {option} {value!r}; known: {', '.join(known)}")
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise EdgecnnError(f"unknown --targets {', '.join(unknown) or '(none)'}; known: {', '.join(TARGETS)}")


def simulate(model: nn.Module, setting: Setting, activation_ranges: dict, quantizer: str, range_kind: str,
             granularity: str, score: Callable[[nn.Module], dict]) -> dict:
    """score() of a copy of `model` quantized as `setting` says; `model` itself is left as it was."""
    trial = copy.deepcopy(model)
    layers = dict(zip(quantized_layers(model), quantized_layers(trial)))
    if setting.weight_bits < 32:
        quantize_weights(trial, setting.bits, quantizer, range_kind, granularity)
    handles = []
    if setting.activation_bits < 32:
        ranges = {layers[layer]: bounds for layer, bounds in activation_ranges.items()}
        handles = quantize_activations(trial, ranges, setting.bits, quantizer)
    try:
        return score(trial)
    finally:
        for handle in handles:
            handle.remove()


def bit_sweep(parent, *, bits=DEFAULT_BITS, targets=TARGETS, quantizer: str = "linear", range_kind: str = "minmax",
              granularity: str = "per-channel", fold: bool = True, calib_images: int = 512,
              test_images: int | None = None, runs_dir=None, name=None, on_row=None):
    """Every (target, bits) setting on the parent's test split; returns (DerivedRun, rows). The run folder holds
    bits.json (rewritten after each setting, so a killed sweep keeps what it measured) and result.json; it has no
    checkpoint: a simulated setting is not a model file."""
    from edgecnn.compress.fold import fold_batchnorms
    from edgecnn.compress.train.loop import test_scores
    from edgecnn.compress.zoo import count_mflops, count_params
    from edgecnn.compress.zoo.measure import micronet_score
    from edgecnn.data import Split, normalize

    from .lineage import DerivedRun

    bits, targets = sorted(set(bits), reverse=True), [t for t in TARGETS if t in targets]
    check_settings(bits, targets, quantizer, range_kind, granularity)
    if calib_images < 1:
        raise EdgecnnError("--calib-images must be at least 1")
    data, in_chans = parent.data, parent.payload["in_chans"]
    model = copy.deepcopy(parent.model).eval()
    folded: int | str = 0
    if fold:
        model, folded = fold_batchnorms(model)
    params, mflops = count_params(model), count_mflops(model, in_chans)
    test = data.test if test_images is None else Split(data.test.images[:test_images], data.test.labels[:test_images])
    calibration = data.train.images[:calib_images]
    batches = [normalize(calibration[i:i + 128], data.mean, data.std) for i in range(0, len(calibration), 128)]
    ranges = calibrate_activations(model, batches, quantizer, range_kind)
    settings = {"bits": bits, "targets": targets, "quantizer": quantizer, "range": range_kind,
                "granularity": granularity, "fold_batchnorm": fold, "batchnorm_folded": folded,
                "calibration_images": len(calibration), "test_images": len(test), "simulated": True}
    run = DerivedRun(parent, "bits", settings, runs_dir, name)

    def row(target: str, width: int, scores: dict) -> dict:
        setting = Setting(target, width) if target != "none" else None
        weight_bits = setting.weight_bits if setting else 32
        activation_bits = setting.activation_bits if setting else 32
        return {"target": target, "bits": width, "weight_bits": weight_bits, "activation_bits": activation_bits,
                **scores, "micronet": micronet_score(params, mflops, weight_bits, activation_bits)}

    def score(net: nn.Module) -> dict:
        return test_scores(net, test, data.mean, data.std)

    rows = [row("none", 32, score(model))]
    if on_row:
        on_row(rows[0])
    for target in targets:
        for width in bits:
            rows.append(row(target, width, simulate(model, Setting(target, width), ranges, quantizer, range_kind,
                                                    granularity, score)))
            run.write_json("bits.json", rows)
            if on_row:
                on_row(rows[-1])
    run.write_json("bits.json", rows)
    result = {"status": "finished", "method": "bits", "simulated": True, "test_acc": rows[0]["top1"],
              "test_top5": rows[0]["top5"], "test_images": len(test), "params": params, "mflops": mflops,
              "parent_test_acc": run.lineage["parent_test_acc"], "loses_1pp_at": first_loss(rows, 0.01)}
    run.write_json("result.json", result)
    return run, rows


def first_loss(rows: list[dict], points: float) -> dict[str, int | None]:
    """target -> the widest bit width whose top-1 is more than `points` below the unquantized model's (the width at
    which that target starts to cost accuracy), None when no width measured does."""
    reference = next(r["top1"] for r in rows if r["target"] == "none")
    found: dict[str, int | None] = {}
    for r in sorted((r for r in rows if r["target"] != "none"), key=lambda r: -r["bits"]):
        found.setdefault(r["target"], None)
        if found[r["target"]] is None and reference - r["top1"] > points:
            found[r["target"]] = r["bits"]
    return found
