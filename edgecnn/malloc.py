"""tcmalloc for the commands that train on the CPU.

A CPU training step allocates and frees every activation and gradient buffer, megabytes each. glibc hands blocks
that large back to the kernel on free and page-faults them in again on the next allocation; tcmalloc keeps them
(docs/training.md has the measured gain; jemalloc, tried the same way, was slower).

An allocator can only be swapped at process start, so `edgecnn train / compress / pipeline / reproduce` re-execute
themselves once with the library in LD_PRELOAD, as PyTorch's own CPU launcher does
(`python -m torch.backends.xeon.run_cpu --enable-tcmalloc`). The re-executed process puts LD_PRELOAD back as it
was, so the programs it starts (ssh, the emulated board, the bundle runner) keep their own allocator. Nothing
happens when tcmalloc is not installed (Debian: libtcmalloc-minimal4; scripts/setup.sh installs it) or when
EDGECNN_MALLOC=system.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

#: commands whose work is training (the first word after `edgecnn`)
TRAINING_COMMANDS = frozenset({"train", "compress", "pipeline", "reproduce"})
_LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
# Marks the re-executed process and carries the LD_PRELOAD it had before, to be put back.
_MARK = "_EDGECNN_PRELOADED_FROM"


def find_tcmalloc() -> str | None:
    machine = platform.machine()
    folders = (f"/usr/lib/{machine}-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
    for folder in folders:
        for name in _LIBRARIES:
            if (Path(folder) / name).is_file():
                return str(Path(folder) / name)
    return None


def loaded_allocator() -> str:
    """'tcmalloc' when this process has it mapped, else 'system' (glibc). Recorded with every run."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "tcmalloc" if "libtcmalloc" in maps else "system"


def preload_env(env: dict[str, str] | None = None) -> dict[str, str] | None:
    """The environment for a child process that should train under tcmalloc; None when tcmalloc is missing or
    EDGECNN_MALLOC=system."""
    env = dict(os.environ if env is None else env)
    library = find_tcmalloc()
    if library is None or env.get("EDGECNN_MALLOC", "tcmalloc") == "system":
        return None
    before = env.get("LD_PRELOAD", "")
    env[_MARK] = before
    env["LD_PRELOAD"] = f"{library}:{before}" if before else library
    return env


def reexec_for_training(argv: Sequence[str]) -> None:
    """Called first by the `edgecnn` entry point. Re-executes a training command under tcmalloc (once); in the
    re-executed process, restores LD_PRELOAD for the programs it will start."""
    if _MARK not in os.environ and (len(argv) < 2 or argv[1] not in TRAINING_COMMANDS):
        return
    reexec_under_tcmalloc()


def reexec_under_tcmalloc() -> None:
    """Re-execute this Python process under tcmalloc unless it already runs under it (also for scripts such as
    benchmarks/, which must measure what `edgecnn train` runs); the re-executed process gets LD_PRELOAD back as the
    caller had it. Does nothing when tcmalloc is missing or EDGECNN_MALLOC=system."""
    if _MARK in os.environ:
        before = os.environ.pop(_MARK)
        if before:
            os.environ["LD_PRELOAD"] = before
        else:
            os.environ.pop("LD_PRELOAD", None)
        return
    if loaded_allocator() == "tcmalloc":
        return
    env = preload_env()
    if env is None:
        return
    # sys.orig_argv keeps how Python was started (`-m edgecnn ...`, the console script's path or a script); execve
    # keeps the process id, so torchrun still supervises the same worker.
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
