"""What every way of reaching a device offers the benchmark harness: run a program there, and put a bundle there.

One module per transport (local.py, ssh.py); adding one (adb, a serial console) means one subclass and one entry
in devices/__init__.py's TRANSPORTS. Profiles name their transport by key.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import EdgecnnError

from .profiles import DeviceProfile


#: where bundles go on a device whose profile names no work folder
DEFAULT_WORKDIR = "~/edgecnn-bench"


class DeviceLost(EdgecnnError):
    """The device itself cannot be reached (not one file failing on it): benching it stops, the others go on."""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def last_error_line(self) -> str:
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.returncode}"

    def json_result(self, what: str) -> dict:
        """The JSON object a program printed as its last line (runner, probe, reference); `what` names it in errors."""
        if self.returncode != 0:
            raise EdgecnnError(f"{what} failed: {self.last_error_line()}")
        try:
            return json.loads(self.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise EdgecnnError(f"{what} gave no result") from None


class Transport(ABC):
    def __init__(self, profile: DeviceProfile):
        self.profile = profile

    @property
    def python(self) -> str:
        return self.profile.python or "python3"

    @abstractmethod
    def run(self, argv: list[str], *, cwd: str | None = None, timeout: float = 120,
            hold_stdin: bool = False) -> Result:
        """Run one program with arguments on the device (never through a shell unquoted). With hold_stdin, its
        stdin stays open until it ends, so a program run with `runner.py --exit-on-eof` stops if we go away."""

    @property
    def workdir(self) -> str:
        return self.profile.workdir or DEFAULT_WORKDIR

    @staticmethod
    def check_bundle_name(name: str) -> None:
        """A bundle's folder name on the device: one plain path component, never a hidden or nested one."""
        if not name or name.startswith(".") or "/" in name:
            raise EdgecnnError(f"bundle name {name!r} cannot be a folder name on the device")

    @abstractmethod
    def put_bundle(self, folder: Path, name: str) -> str:
        """Make a verified bundle folder available on the device for a bench; returns its path there."""

    def install_bundle(self, folder: Path, name: str) -> str:
        """Put a bundle into the device's work folder to stay (`edgecnn deploy`); returns its path there."""
        return self.put_bundle(folder, name)

    def login(self) -> list[str]:
        """The command that opens a shell on the device from here (none: it is this machine)."""
        return []


def execute(command: list[str], *, timeout: float, what: str, stdin: bytes | None = None,
            hold_stdin: bool = False, cwd: str | None = None) -> Result:
    """Run a local process with a deadline; stdout/stderr go to files so a chatty child never blocks on a pipe.
    On timeout or Ctrl-C the child is killed, never left behind."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=cwd)
        except FileNotFoundError:
            raise EdgecnnError(f"{what}: {command[0]} is not installed or not found") from None
        try:
            if stdin is not None:
                try:
                    process.stdin.write(stdin)
                except BrokenPipeError:  # the child ended early (e.g. no connection); its exit status says why
                    pass
            if not hold_stdin:
                process.stdin.close()
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise EdgecnnError(f"{what}: no answer within {timeout:.0f} s") from None
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            if not process.stdin.closed:
                try:
                    process.stdin.close()
                except BrokenPipeError:
                    pass
        out.seek(0)
        err.seek(0)
        return Result(process.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"))
