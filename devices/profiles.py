"""Device profiles: where a benchmark runs and how to reach it, one TOML file per device.

Built-in profiles ship in devices/profiles/ (host, rpi3, rpi4, rpi5, generic-arm64). Users add their own with
`edgecnn devices add`, which writes $EDGECNN_CONFIG_DIR/devices/NAME.toml (default ~/.config/edgecnn/devices);
a user profile with a built-in's name replaces it.

An SSH profile names a Host alias of ~/.ssh/config by default (`ssh_host = "rpi4"`), so keys, agent, user,
port and ProxyJump stay where OpenSSH users keep them; `ssh_user` / `ssh_port` are optional overrides. No
password or key material is ever stored in a profile.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecnn.errors import EdgecnnError, UnknownNameError
from edgecnn.io import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

BUILTIN_DIR = Path(__file__).with_name("profiles")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
TRANSPORTS = ("local", "ssh")
RUNTIMES = ("onnxruntime", "litert")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    transport: str
    ssh_host: str = ""
    ssh_user: str = ""
    ssh_port: int | None = None
    python: str = ""
    workdir: str = ""
    threads: tuple[int, ...] = (1,)
    runtimes: tuple[str, ...] = RUNTIMES
    source: str = field(default="", compare=False)

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def config_dir() -> Path:
    base = os.environ.get("EDGECNN_CONFIG_DIR") or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "edgecnn"
    return Path(base) / "devices"


def _parse(name: str, path: Path) -> DeviceProfile:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise EdgecnnError(f"device profile {path} is not readable TOML: {error}") from error
    known = {f for f in DeviceProfile.__dataclass_fields__ if f not in ("name", "source")}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise EdgecnnError(f"device profile {path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    try:
        profile = DeviceProfile(name=name, source=str(path), **{
            k: tuple(v) if k in ("threads", "runtimes") else v for k, v in raw.items()})
    except TypeError as error:
        raise EdgecnnError(f"device profile {path}: {error}") from error
    _validate(profile, str(path))
    return profile


def _validate(profile: DeviceProfile, where: str) -> None:
    if profile.transport not in TRANSPORTS:
        raise EdgecnnError(f"{where}: transport must be one of {', '.join(TRANSPORTS)}, not {profile.transport!r}")
    if profile.transport == "ssh" and not profile.ssh_host:
        raise EdgecnnError(f"{where}: an ssh profile needs ssh_host (a ~/.ssh/config alias or a host name)")
    if profile.ssh_host.startswith("-") or any(c.isspace() for c in profile.ssh_host):
        raise EdgecnnError(f"{where}: ssh_host {profile.ssh_host!r} is not a host name")  # never an ssh option
    if not profile.threads or not all(isinstance(t, int) and t >= 1 for t in profile.threads):
        raise EdgecnnError(f"{where}: threads must be a list of positive integers")
    bad = [r for r in profile.runtimes if r not in RUNTIMES]
    if bad:
        raise EdgecnnError(f"{where}: unknown runtime {bad[0]!r}; known: {', '.join(RUNTIMES)}")


def list_profiles() -> dict[str, DeviceProfile]:
    """Built-in profiles, then the user's (which win on a name clash), by name."""
    found = {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.toml"))}
    if config_dir().is_dir():
        found.update({p.stem: p for p in sorted(config_dir().glob("*.toml"))})
    return {name: _parse(name, path) for name, path in sorted(found.items())}


def get_profile(name: str) -> DeviceProfile:
    profiles = list_profiles()
    if name not in profiles:
        raise UnknownNameError("device", name, profiles, hint="edgecnn devices list")
    return profiles[name]


def add_profile(profile: DeviceProfile, *, replace: bool = False) -> Path:
    """Write a user profile (TOML) atomically; refuses to overwrite one unless `replace`."""
    if not NAME_PATTERN.match(profile.name):
        raise EdgecnnError(f"device name {profile.name!r}: use lower-case letters, digits, '-' and '_'")
    _validate(profile, f"device {profile.name}")
    path = config_dir() / f"{profile.name}.toml"
    if path.exists() and not replace:
        raise EdgecnnError(f"device {profile.name} exists ({path}); pass --replace to overwrite it")
    lines = []
    for key, value in profile.as_dict().items():
        if key in ("name", "source") or value in ("", None):
            continue
        lines.append(f"{key} = {json.dumps(value)}")  # JSON strings, numbers and lists are valid TOML values
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
