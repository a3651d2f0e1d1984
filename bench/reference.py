"""The PyTorch eager fp32 reference row of `edgecnn bench` on the host: the trained checkpoint itself, timed and
scored exactly as the runner times and scores an exported file (same input shape, warm-up, percentiles, sample),
so every exported file can be read against the model it came from.

Run in a fresh process per thread count, as the runner is: `python -m edgecnn.bench.reference CKPT --bundle DIR
--threads T`; prints one JSON object with the runner's bench keys plus the sample accuracy and predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def measure(checkpoint: str, bundle: str, threads: int, runs: int, warmup: int, limit: int | None) -> dict:
    import numpy as np
    import torch

    from edgecnn.export import runner
    from edgecnn.compress.rebuild import build_from_checkpoint
    from edgecnn.runs import load_checkpoint

    torch.set_num_threads(threads)
    manifest = runner.verify_bundle(bundle)
    rss_before = runner.peak_rss_mib()
    started = time.perf_counter()
    model = build_from_checkpoint(load_checkpoint(checkpoint), model=manifest["model"], source=checkpoint).eval()
    load_ms = (time.perf_counter() - started) * 1e3
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(manifest["input"]["shape"]).astype(np.float32))
    times = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(x)
        first_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(warmup):
            model(x)
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
        images = np.load(os.path.join(bundle, manifest["sample"]["images"]), allow_pickle=False)[:limit]
        labels = np.load(os.path.join(bundle, manifest["sample"]["labels"]), allow_pickle=False)[:limit]
        mean, std = manifest["input"]["mean"], manifest["input"]["std"]
        ranked = np.concatenate([runner.top_k(model(torch.from_numpy(runner.preprocess(images[i:i + 256], mean, std)))
                                              .numpy()) for i in range(0, len(images), 256)])
        top1 = ranked[:, 0]
    return {"file": "pytorch-eager", "runtime": f"torch {torch.__version__}", "threads": threads, "batch": 1,
            "warmup": warmup, "load_ms": round(load_ms, 2), "first_ms": round(first_ms, 3),
            **runner.latency_stats(times), "peak_rss_mib": runner.peak_rss_mib(), "rss_after_import_mib": rss_before,
            "versions": {"torch": torch.__version__, "numpy": np.__version__}, "machine": runner.machine_info(),
            "accuracy": float((top1 == labels).mean()), "top5": float((ranked == labels[:, None]).any(1).mean()),
            "images": int(len(labels)), "predictions": top1.tolist()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    from edgecnn.errors import EdgecnnError
    from edgecnn.export.runner import BundleError

    try:
        print(json.dumps(measure(args.checkpoint, args.bundle, args.threads, args.runs, args.warmup, args.limit)))
    except (EdgecnnError, BundleError) as error:
        print(f"reference: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
