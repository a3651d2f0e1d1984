"""Latency of model files on this machine: each measurement in a fresh process that imports only numpy and the
runtime (the device runner, not torch), so one file's allocations and thread pools never colour the next one's.

A cell is the median over `processes` processes of each process's p50; the spread between processes is kept so a
noisy machine shows up in the numbers instead of hiding in them.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from edgecnn.devices.transport import execute
from edgecnn.export import runner

RUNNER = Path(runner.__file__)


def run_once(path: str | Path, threads: int, *, batch: int = 1, runs: int = 200, warmup: int = 30,
             layout: str | None = None, timeout: float = 600) -> dict:
    """One fresh runner process timing `path`; layout None = the file's own (the runner reads it off the file)."""
    command = [sys.executable, str(RUNNER), "bench", "--json", str(path), "--threads", str(threads), "--batch", str(batch),
               "--runs", str(runs), "--warmup", str(warmup), *(["--layout", layout] if layout else [])]
    return execute(command, timeout=timeout, what=f"timing {path}").json_result(f"timing {path}")


def time_file(path: str | Path, threads: int, *, processes: int = 3, **kwargs) -> dict:
    """Median of per-process p50/p90/p99 over `processes` fresh processes, plus the spread of the p50s."""
    samples = [run_once(path, threads, **kwargs) for _ in range(processes)]
    p50s = [s["p50_ms"] for s in samples]
    result = dict(samples[0])
    for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "peak_rss_mib", "load_ms"):
        result[key] = statistics.median(s[key] for s in samples)
    result.update(processes=processes, p50_spread_pct=round(100 * (max(p50s) - min(p50s)) / statistics.median(p50s), 1))
    return result
