"""The host itself as a device: programs run in fresh local processes, bundles are used where they lie."""

from __future__ import annotations

import sys
from pathlib import Path

from .transport import Result, Transport, execute


class LocalTransport(Transport):
    @property
    def python(self) -> str:
        return self.profile.python or sys.executable

    def run(self, argv: list[str], *, cwd: str | None = None, timeout: float = 120,
            hold_stdin: bool = False) -> Result:
        return execute(argv, timeout=timeout, what=f"device {self.profile.name}", hold_stdin=hold_stdin, cwd=cwd)

    def put_bundle(self, folder: Path, name: str) -> str:
        return str(Path(folder).resolve())
