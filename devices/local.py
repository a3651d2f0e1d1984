"""The host itself as a device (or an emulated board run from it): programs run in fresh local processes,
bundles are benched where they lie and installed by copying."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from edgecnn.errors import EdgecnnError

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

    def install_bundle(self, folder: Path, name: str) -> str:
        """Copy the bundle into `workdir/name`: kept as it is when a bundle of that name (the manifest's hash)
        verifies there, else copied into a staging folder that replaces the old one only once complete."""
        from edgecnn.export.runner import RunnerError, verify_bundle

        self.check_bundle_name(name)
        workdir = Path(os.path.expanduser(self.workdir))
        target = workdir / name
        try:
            verify_bundle(str(target))
            return str(target)
        except RunnerError:
            pass
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{name}.partial-", dir=workdir))
        except OSError as error:
            raise EdgecnnError(f"device {self.profile.name}: cannot write {workdir}: {error.strerror}") from None
        try:
            shutil.copytree(folder, staging, dirs_exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise EdgecnnError(f"device {self.profile.name}: cannot install the bundle in {target}: "
                               f"{error.strerror or error}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return str(target)
