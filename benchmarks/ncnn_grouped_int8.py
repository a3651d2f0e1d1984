"""Is ncnn's int8 grouped convolution right, and does it answer one input the same way twice? A 3x3 conv, then one
grouped 1x1 conv per shape, quantized with edgecnn's ncnn int8 steps and no fallback, run five times on one input
(ncnn's own net, one thread); the error is against the fp32 net. This is why
export/ncnn_format.py keeps every grouped convolution in fp32 (docs/export.md).

    python benchmarks/ncnn_grouped_int8.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

# in channels, out channels, groups
SHAPES = [(16, 32, 4), (32, 32, 4), (64, 64, 8), (16, 32, 2), (8, 32, 4), (4, 32, 4),
          (32, 16, 4), (16, 48, 4), (12, 24, 4), (16, 32, 16)]
RUNS = 5


def measure(folder: Path, inputs: int, outputs: int, groups: int) -> tuple[int, bool, float]:
    from edgecnn.export import ncnn_format as ncnn

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, inputs, 3, padding=1),
                                torch.nn.Conv2d(inputs, outputs, 1, groups=groups)).eval()
    path = folder / f"g{inputs}-{outputs}-{groups}.ncnn"
    ncnn.export_fp32(model, path, 1)
    param, weights = ncnn.read_container(path)
    layers = ncnn.parse_param(param)
    ncnn.split_weights(layers, weights)
    net = ncnn._net(param, weights)
    input_blob, output_blob = ncnn.io_blobs(layers)
    images = np.random.default_rng(0).standard_normal((8, 1, 32, 32)).astype(np.float32)
    scales = ncnn.activation_scales(layers, net, images, input_blob)
    int8_net = ncnn._net(*ncnn.quantized_graph(layers, scales, set()))
    image = images[0]
    answers = [ncnn._extract(int8_net, {input_blob: image}, [output_blob])[0] for _ in range(RUNS)]
    (expected,) = ncnn._extract(net, {input_blob: image}, [output_blob])
    distinct = len({answer.tobytes() for answer in answers})
    finite = all(np.isfinite(answer).all() for answer in answers)
    with np.errstate(invalid="ignore", over="ignore"):
        error = max(float(np.linalg.norm(a.astype(np.float64) - expected) / np.linalg.norm(expected)) for a in answers)
    return distinct, finite, error


def main() -> None:
    import ncnn

    print(f"ncnn {ncnn.__version__}, {RUNS} runs of one input, one thread")
    print(f"{'in->out / groups':<18} {'outs/group':>10} {'distinct answers':>17} {'finite':>7} {'worst rel. error':>17}")
    with tempfile.TemporaryDirectory() as folder:
        for inputs, outputs, groups in SHAPES:
            distinct, finite, error = measure(Path(folder), inputs, outputs, groups)
            print(f"{f'{inputs}->{outputs} / {groups}':<18} {outputs // groups:>10} {distinct:>17} "
                  f"{'yes' if finite else 'no':>7} {error:>17.3g}")


if __name__ == "__main__":
    main()
