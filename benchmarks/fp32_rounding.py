"""How far PyTorch's own float32 logits are from float64 for every zoo variant, in the state and on the input
tests/export/test_zoo_formats.py uses (seed 0, BatchNorm settled on 3 random batches, then a 3-image input).
The export test holds ONNX/TFLite to 1e-4 of PyTorch unless this number exceeds 5e-5; this prints which do.

    python benchmarks/fp32_rounding.py
"""

from __future__ import annotations

import torch


def main() -> None:
    from edgecnn.compress.zoo import get_model, list_models, settle_batchnorm

    print(f"{'variant':<18} {'|fp32 - fp64| max':>18} {'max |logit|':>12} {'test bound':>11}")
    for name in list_models():
        torch.manual_seed(0)  # the test's sequence: seed, build, settle, draw the input
        model = settle_batchnorm(get_model(name, 10, 1), [torch.randn(16, 1, 32, 32) for _ in range(3)])
        x = torch.randn(3, 1, 32, 32)
        with torch.no_grad():
            fp32 = model(x)
            error = (fp32.double() - model.double()(x.double())).abs().max().item()
        bound = 1e-4 if error <= 5e-5 else 2 * error
        print(f"{name:<18} {error:>18.2e} {fp32.abs().max().item():>12.2f} {bound:>11.1e}")


if __name__ == "__main__":
    main()
