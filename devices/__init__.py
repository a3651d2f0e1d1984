"""The devices benchmarks run on: profiles (profiles.py), one transport module per way of reaching a device
(local.py, ssh.py, behind transport.py's interface), `devices check` (probe.py), and the emulated aarch64 board's
instruction counter (emulated/icount.c, built by scripts/arm64-device.sh)."""

from __future__ import annotations

from .local import LocalTransport
from .profiles import DeviceProfile
from .ssh import SshTransport
from .transport import Transport

#: profile key -> the transport that reaches such a device
TRANSPORTS = {"local": LocalTransport, "ssh": SshTransport}


def open_transport(profile: DeviceProfile) -> Transport:
    return TRANSPORTS[profile.transport](profile)
