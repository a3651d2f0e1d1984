"""Quantization-aware fine-tuning that ends in the same int8 exports as post-training quantization.

A fake-quant fine-tune, not a PT2E QAT graph: the conv and linear weights are quantized per output channel
(symmetric, 7-bit by default: what `edgecnn export`'s u8s8 ONNX scheme stores on x86) and the BatchNorm / ReLU
outputs per tensor (8-bit affine, moving-average min/max, as the export's calibration does), with straight-through
gradients, so the model learns weights that survive rounding. Afterwards the fake-quant is removed and the weights
are left *on the int8 grid*: the run is a plain float checkpoint that `edgecnn export --int8` calibrates and
quantizes like any other, into ONNX and TFLite (one export path, no second quantizer to keep in step).
Why not PT2E QAT: its graph would have to be re-lowered separately for ONNX and for litert; the fake-quant
weights go through both exporters unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver
from torch.nn.utils import parametrize


class WeightFakeQuant(nn.Module):
    """Per-output-channel symmetric fake quantization of a weight (a parametrization)."""

    def __init__(self, bits: int = 7):
        super().__init__()
        self.qmax = 2 ** (bits - 1) - 1

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = weight.detach().abs().amax(dim=tuple(range(1, weight.ndim))).clamp_min(1e-8) / self.qmax
        zero = torch.zeros(len(scale), dtype=torch.int32, device=weight.device)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -self.qmax, self.qmax)


def quantized_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def attach_fake_quant(model: nn.Module, weight_bits: int = 7) -> list:
    """Fake-quant every conv/linear weight and every BatchNorm/ReLU output; returns the hook handles."""
    for layer in quantized_layers(model):
        parametrize.register_parametrization(layer, "weight", WeightFakeQuant(weight_bits))
    handles = []
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardtanh)):
            module.activation_fake_quant = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=0,
                                                        quant_max=255, dtype=torch.quint8)
            handles.append(module.register_forward_hook(lambda m, _, out: m.activation_fake_quant(out)))
    return handles


def detach_fake_quant(model: nn.Module, handles: list) -> None:
    """Remove the fake-quant; the weights stay at their quantized values (a plain float model again)."""
    for handle in handles:
        handle.remove()
    for module in model.modules():
        if hasattr(module, "activation_fake_quant"):
            del module.activation_fake_quant
    for layer in quantized_layers(model):
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)


def quantization_aware_finetune(parent, *, weight_bits: int = 7, finetune_config=None, runs_dir=None, name=None,
                                reporter=None):
    """Fake-quant fine-tune of the parent run; returns (DerivedRun, result)."""
    from dataclasses import asdict

    from .finetune import FinetuneConfig, finetune
    from .lineage import DerivedRun

    config = finetune_config or FinetuneConfig(epochs=3, lr=1e-3, schedule="cosine", patience=0)
    config.check()
    model = parent.model
    run = DerivedRun(parent, "qat", {"weight_bits": weight_bits, "activation_bits": 8, "finetune": asdict(config)},
                     runs_dir, name)
    handles = attach_fake_quant(model, weight_bits)
    records = finetune(model, parent.data, config, reporter=reporter)
    detach_fake_quant(model, handles)
    run.write_metrics(records)
    run.save(model, "best.pt")
    return run, run.finish(model)
