"""The paper's measurements: trainable parameters, fvcore FLOPs (eval mode), fp32 state_dict size in MiB."""

from __future__ import annotations

import io
import logging
import warnings

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BN gamma/beta included, running stats not, dead modules included), as the paper."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _fvcore(model: nn.Module, in_chans: int, input_size: int):
    """fvcore's FlopCountAnalysis at batch 1 in eval mode, totals computed before the model's mode is restored."""
    was_training = model.training
    model.eval()
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fvcore traces with torch.jit, which warns about its own deprecation
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(model, torch.zeros(1, in_chans, input_size, input_size))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return analysis.total(), analysis.by_operator()
    finally:
        model.train(was_training)


def count_mflops(model: nn.Module, in_chans: int = 3, input_size: int = 32) -> float:
    """fvcore's count in millions at batch 1, eval mode. fvcore counts one multiply-add as one "flop" (so these are
    MMACs for conv/linear) plus BatchNorm and average pooling; it skips activations, adds and shuffles."""
    return _fvcore(model, in_chans, input_size)[0] / 1e6


def count_mmacs(model: nn.Module, in_chans: int = 3, input_size: int = 32) -> float:
    """Multiply-adds of the convolutions and linear layers only, in millions (fvcore's per-operator counts): the
    arithmetic a compute floor is made of, without count_mflops' BatchNorm and pooling."""
    by_operator = _fvcore(model, in_chans, input_size)[1]
    return sum(v for k, v in by_operator.items() if k in ("conv", "linear", "addmm", "matmul", "bmm")) / 1e6


def state_dict_mib(model: nn.Module) -> float:
    """Size of `torch.save(model.state_dict())` in MiB (the paper's size, less Lightning's few KB of metadata)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 2**20


# MicroNet challenge (NeurIPS 2019) normalisation: WideResNet-28-10 on CIFAR-100, 36.5 M parameters and
# 10.49 G math operations. A multiply-add is two operations; a parameter or a multiply of b bits counts b/32 (the
# larger operand's width), the accumulating additions count in full (the challenge's rules for quantized entries).
MICRONET_PARAMS = 36.5e6
MICRONET_OPS = 10.49e9


def micronet_score(params: int | None, mflops: float | None, weight_bits: int = 32,
                   activation_bits: int = 32) -> float | None:
    """The MicroNet score of a model with `params` parameters and `mflops` multiply-adds (millions) at these
    widths: parameters / 36.5 M + operations / 10.49 G."""
    if params is None or mflops is None:
        return None
    macs = mflops * 1e6
    effective_params = params * weight_bits / 32
    effective_ops = macs * (max(weight_bits, activation_bits) / 32 + 1.0)
    return effective_params / MICRONET_PARAMS + effective_ops / MICRONET_OPS


def settle_batchnorm(model: nn.Module, batches) -> nn.Module:
    """Give an untrained model the BatchNorm statistics of real inputs (cumulative average over `batches`), then
    eval mode. Export and latency checks need activations of a trained network's scale; with the initial running
    stats a 100-layer ResNet's logits reach 1e4. Weights are not touched."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(batch)
    return model.eval()
