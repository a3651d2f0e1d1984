"""`edgecnn deploy`: install a bundle on a device to stay, check that it verifies and which of its files the device
can run, and say the exact commands that run it there.

The bundle goes where `edgecnn bench` puts it (the profile's work folder, one folder per bundle named by its
manifest's hash), through the same transport, so a deploy and a later bench share one copy. Nothing is run
through a shell unquoted: every printed command quotes its paths as a POSIX shell reads them.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecnn.errors import EdgecnnError
from edgecnn.export.bundle import Manifest

from . import open_transport
from .probe import PIP_NAMES, check, fix_command
from .profiles import DeviceProfile
from .ssh import quote_remote


@dataclass
class Deployment:
    device: str
    bundle: str  # the bundle folder on this machine
    path: str  # where it lies on the device
    login: list[str]  # the command that opens a shell there (empty: this machine)
    commands: list[str]  # shell lines to run there, in order, the first one changing into `path`
    runnable: list[str] = field(default_factory=list)  # model files whose runtime the device has
    missing: dict[str, str] = field(default_factory=dict)  # model file -> the package it needs there
    verified: str = ""  # what the runner said when it checked the files there

    def as_dict(self) -> dict:
        return asdict(self)


def deploy(profile: DeviceProfile, folder: Path, manifest: Manifest, timeout: float = 300) -> Deployment:
    transport = open_transport(profile)
    report = check(profile, timeout=timeout)  # an unreachable device fails here, before anything is copied
    path = transport.install_bundle(folder, manifest.bundle_id)
    has_numpy = bool(report["packages"].get("numpy"))
    if has_numpy:  # the runner needs numpy even to check the hashes
        checked = transport.run([transport.python, "runner.py", "verify"], cwd=path, timeout=timeout)
        if checked.returncode != 0:
            raise EdgecnnError(f"device {profile.name}: the bundle in {path} does not verify there: "
                               f"{checked.last_error_line()}")
        verified = checked.stdout.strip()
    else:
        verified = "not verified there yet: the runner needs numpy, which is not installed"
    needs = {a["file"]: PIP_NAMES.get(a.get("runtime", ""), a.get("runtime", "?")) for a in manifest.artifacts}
    runnable = [file for file, package in needs.items() if report["packages"].get(package) and has_numpy]
    missing = {file: package for file, package in needs.items() if not report["packages"].get(package)}
    python = shlex.quote(transport.python)
    commands = [f"cd {quote_remote(path) if transport.login() else shlex.quote(path)}"]
    if not runnable:  # nothing would run: installing numpy and a runtime comes first
        first_runtime = next(iter(missing.values()), None)
        commands.append(fix_command(python, [*(["numpy"] if not has_numpy else []),
                                             *([first_runtime] if first_runtime else [])]))
    chosen = shlex.quote((runnable or list(needs))[0])
    limit = f" --limit {profile.sample}" if profile.sample else ""  # an emulated board scores a smaller sample
    runs = " --runs 20 --warmup 3" if profile.counts_instructions else ""  # and runs at a hundredth of the speed
    example = manifest.example.get("image")
    commands += [f"{python} runner.py verify", f"{python} runner.py eval{limit}",
                 *([f"{python} runner.py predict {shlex.quote(example)} --model {chosen}"] if example else []),
                 f"{python} runner.py bench {chosen} --threads {max(profile.threads)}{runs}"]
    return Deployment(profile.name, str(folder), path, transport.login(), commands, runnable, missing, verified)
