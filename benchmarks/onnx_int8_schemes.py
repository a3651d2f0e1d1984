"""Accuracy of onnxruntime int8 schemes on one exported fp32 ONNX file: MinMax vs Percentile calibration,
u8s8 with full-range and 7-bit weights, s8s8. Each variant is quantized from the same file and the same
calibration images (training split) and evaluated on the first --images test images.

    python benchmarks/onnx_int8_schemes.py artifacts/exp13-fmnist-3ep --images 3000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

VARIANTS = [("minmax", "u8s8", False), ("minmax", "u8s8", True), ("percentile", "u8s8", False),
            ("minmax", "s8s8", False)]


def main() -> None:
    from edgecnn.data import load_recorded
    from edgecnn.export.record import ExportRecord
    from edgecnn.export import onnx as onnx_format
    from edgecnn.export.pipeline import calibration_images, evaluate_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--calib-samples", type=int, default=1000)
    args = parser.parse_args()
    fp32 = Path(args.export_dir) / "model.fp32.onnx"
    record = ExportRecord.read(args.export_dir)
    data = load_recorded(record.data, what=str(record.path))
    images, labels = data.test.images[:args.images].numpy(), data.test.labels[:args.images].numpy()
    reference = evaluate_file(fp32, images, data.mean, data.std)
    calib = calibration_images(data, args.calib_samples)
    print(f"{record.model}, first {len(labels)} test images: fp32 accuracy {(reference.argmax(1) == labels).mean():.4f}")
    print(f"{'calibration':<12} {'scheme':<7} {'7-bit w':<8} {'accuracy':>9} {'agreement':>10} {'mean|Δlogit|':>13} "
          f"{'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for method, scheme, reduced in VARIANTS:
            started = time.perf_counter()
            onnx_format.quantize_int8(fp32, Path(tmp) / "q.onnx", calib, method=method, scheme=scheme,
                                      reduce_range=reduced)
            logits = evaluate_file(Path(tmp) / "q.onnx", images, data.mean, data.std)
            print(f"{method:<12} {scheme:<7} {str(reduced):<8} {(logits.argmax(1) == labels).mean():>9.4f} "
                  f"{(logits.argmax(1) == reference.argmax(1)).mean():>10.4f} "
                  f"{abs(logits - reference).mean():>13.4f} {time.perf_counter() - started:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
