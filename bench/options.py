"""What `edgecnn bench` measures, with its defaults written once (the CLI and `edgecnn pipeline` read them here;
this module imports nothing heavy)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BenchPlan:
    runs: int = 100
    warmup: int = 10
    threads: tuple[int, ...] | None = None  # None: each device profile's own sweep
    formats: tuple[str, ...] | None = None  # None: every file of the bundle
    precisions: tuple[str, ...] | None = None  # None: every precision the bundle holds
    sample: int | None = None  # None: the bundle's whole sample
    timeout: float = 600  # per remote command
    checkpoint: str | None = None  # PyTorch reference on the host; None: no reference row
    count_instructions: bool = False  # also on profiles judged by timing (needs the profile's counter)
    count_runs: int = 10  # inferences between the counter's markers (one thread)
    profile: bool = False  # where the counted instructions go, by the runtime's symbols (a local board only)
