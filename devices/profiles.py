"""Device profiles: where a benchmark runs and how to reach it, one TOML file per device.

Built-in profiles ship in devices/profiles/ (host, rpi3, rpi4, rpi5, generic-arm64). Users add their own with
`edgecnn devices add`, which writes $EDGECNN_CONFIG_DIR/devices/NAME.toml (default ~/.config/edgecnn/devices);
a user profile with a built-in's name replaces it.

How a device's files are judged (`judge`): "timing" (latency measured there: the host, a real board) or
"instructions" (executed aarch64 instructions per inference under the emulated board's counter, for the Pi CPUs
before a real board is benched; scripts/arm64-device.sh builds the board). `cpu` names the board's CPU
(cortex-a53, cortex-a72, cortex-a76), which ties a real Pi to the emulated board of the same CPU; `counter` is the
command that runs the runner under the instruction counter. In `python` and `counter`, `{board}` stands for the
emulated board's folder ($EDGECNN_ARM64_BOARD, else arm64-board in edgecnn's cache folder).

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
RUNTIMES = ("onnxruntime", "litert", "ncnn", "executorch")
JUDGES = ("timing", "instructions")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str = ""
    transport: str = ""
    ssh_host: str = ""
    ssh_user: str = ""
    ssh_port: int | None = None
    python: str = ""
    workdir: str = ""
    threads: tuple[int, ...] = (1,)
    runtimes: tuple[str, ...] = RUNTIMES
    judge: str = "timing"
    cpu: str = ""
    counter: str = ""
    sample: int | None = None  # sample images scored on the device (None: the whole bundle sample)
    source: str = field(default="", compare=False)

    @property
    def counts_instructions(self) -> bool:
        return self.judge == "instructions"

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def board_dir() -> Path:
    """The emulated aarch64 board's folder (scripts/arm64-device.sh builds it there by default)."""
    from edgecnn.io import cache_dir

    return Path(os.environ.get("EDGECNN_ARM64_BOARD") or cache_dir() / "arm64-board")


def board_path(value: str) -> str:
    return value.replace("{board}", str(board_dir())) if "{board}" in value else value


def config_dir() -> Path:
    base = os.environ.get("EDGECNN_CONFIG_DIR") or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "edgecnn"
    return Path(base) / "devices"


def _parse(name: str, path: Path) -> DeviceProfile:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise EdgecnnError(f"device profile {path} is not readable TOML: {error}") from error
    known = {f for f in DeviceProfile.__dataclass_fields__ if f not in ("name", "source")}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise EdgecnnError(f"device profile {path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    for key, value in raw.items():  # a hand-written file: every value checked for its kind before it is used
        if key in ("threads", "runtimes"):
            kind = int if key == "threads" else str
            if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
                raise EdgecnnError(f"device profile {path}: {key} must be a list of "
                                   f"{'integers' if kind is int else 'strings'}, not {value!r}")
        elif key in ("ssh_port", "sample"):
            top = 65535 if key == "ssh_port" else 10**9
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                raise EdgecnnError(f"device profile {path}: {key} must be a positive integer"
                                   f"{' (a port number)' if key == 'ssh_port' else ''}, not {value!r}")
        elif not isinstance(value, str):
            raise EdgecnnError(f"device profile {path}: {key} must be a string, not {value!r}")
    profile = DeviceProfile(name=name, source=str(path), **{
        k: tuple(v) if k in ("threads", "runtimes") else board_path(v) if k in ("python", "counter") else v
        for k, v in raw.items()})
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
    if profile.judge not in JUDGES:
        raise EdgecnnError(f"{where}: judge must be one of {', '.join(JUDGES)}, not {profile.judge!r}")
    if profile.counts_instructions and not profile.counter:
        raise EdgecnnError(f"{where}: a profile judged by instructions needs counter (the counting python command)")
    bad = [r for r in profile.runtimes if r not in RUNTIMES]
    if bad:
        raise EdgecnnError(f"{where}: unknown runtime {bad[0]!r}; known: {', '.join(RUNTIMES)}")


def _profile_files() -> dict[str, Path]:
    """name -> the TOML file that defines it: built-in profiles, then the user's (which win on a name clash)."""
    found = {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.toml"))}
    if config_dir().is_dir():
        found.update({p.stem: p for p in sorted(config_dir().glob("*.toml"))})
    return dict(sorted(found.items()))


def list_profiles(problems: list[str] | None = None) -> dict[str, DeviceProfile]:
    """Every valid profile by name. A profile file that does not parse is left out, and its one-line reason goes
    into `problems` when given: one hand-edited file must not break the commands that do not need it."""
    profiles = {}
    for name, path in _profile_files().items():
        try:
            profiles[name] = _parse(name, path)
        except EdgecnnError as error:
            if problems is not None:
                problems.append(str(error))
    return profiles


def get_profile(name: str) -> DeviceProfile:
    """The profile called `name`; only its own file is read, so another broken profile does not matter here."""
    files = _profile_files()
    if name not in files:
        raise UnknownNameError("device", name, files, hint="edgecnn devices list")
    return _parse(name, files[name])


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
