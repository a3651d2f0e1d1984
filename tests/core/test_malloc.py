"""The training commands re-execute once under tcmalloc (edgecnn/malloc.py); their children keep LD_PRELOAD as it was."""

import json
import os
import subprocess
import sys

import pytest

from edgecnn.malloc import TRAINING_COMMANDS, find_tcmalloc

# Runs the entry point's first call as `edgecnn train` would, then reports what the (re-executed) process has.
PROBE = """
import json, os, sys
from edgecnn.malloc import loaded_allocator, reexec_for_training
reexec_for_training(["edgecnn", sys.argv[1]])
print(json.dumps({"allocator": loaded_allocator(), "pid": os.getpid(), "ld_preload": os.environ.get("LD_PRELOAD")}))
"""


def probe(command: str, **env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, command], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_tcmalloc_is_installed():
    # scripts/setup.sh installs libtcmalloc-minimal4; without it the training commands silently keep glibc.
    assert find_tcmalloc() is not None


@pytest.mark.parametrize("command", sorted(TRAINING_COMMANDS))
def test_training_commands_run_under_tcmalloc_and_restore_ld_preload(command):
    seen = probe(command, LD_PRELOAD="")
    assert seen["allocator"] == "tcmalloc"
    assert not seen["ld_preload"]  # programs started by the run (ssh, runner, qemu) get the caller's LD_PRELOAD


def test_other_commands_and_the_opt_out_keep_the_system_allocator():
    assert probe("export")["allocator"] == "system"
    assert probe("train", EDGECNN_MALLOC="system")["allocator"] == "system"
