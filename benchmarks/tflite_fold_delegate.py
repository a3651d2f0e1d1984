"""Why TFLite int8 is converted from the unfolded model: the int8 .tflite of a run, converted as trained and with
the ghost modules' BatchNorm folded (export/reparam.py), timed in one process with LiteRT's default delegate
(XNNPACK) and without it, 1 thread, batch 1, median of 200 invokes after 20.

    python benchmarks/tflite_fold_delegate.py runs/exp13-fmnist-3ep/best.pt      # about 5 minutes (2 conversions)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def median_invoke_ms(path: Path, resolver) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    for _ in range(20):
        interpreter.invoke()
    times = []
    for _ in range(200):
        started = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - started) * 1e3)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--calib-samples", type=int, default=1000)
    args = parser.parse_args()

    import torch
    from ai_edge_litert.interpreter import OpResolverType

    from edgecnn.data import load_dataset
    from edgecnn.export.pipeline import calibration_images
    from edgecnn.export.reparam import reparameterize
    from edgecnn.export.tflite import count_ops, export_int8
    from edgecnn.compress.rebuild import build_from_checkpoint
    from edgecnn.runs import load_checkpoint

    payload = load_checkpoint(args.checkpoint)
    model = build_from_checkpoint(payload).eval()
    in_chans = payload["in_chans"]
    folded, _ = reparameterize(model, torch.zeros(1, in_chans, 32, 32))
    data = load_dataset(payload["data"]["dataset"], None, in_chans=in_chans)
    calibration = calibration_images(data, args.calib_samples)
    with tempfile.TemporaryDirectory() as tmp:
        print("| model | QUANTIZE / DEQUANTIZE ops | XNNPACK ms | no delegate ms |")
        print("|---|---|---|---|")
        for label, candidate in (("as trained", model), ("ghost BN folded", folded)):
            path = Path(tmp) / f"{label.replace(' ', '-')}.tflite"
            export_int8(candidate, path, in_chans, calibration)
            ops = count_ops(path)
            print(f"| {label} | {ops.get('QUANTIZE', 0)} / {ops.get('DEQUANTIZE', 0)} | "
                  f"{median_invoke_ms(path, OpResolverType.AUTO):.2f} | "
                  f"{median_invoke_ms(path, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES):.2f} |", flush=True)


if __name__ == "__main__":
    main()
