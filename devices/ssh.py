"""SSH transport through the system's OpenSSH client (as Ansible does).

Why OpenSSH and not a Python SSH library: it reads ~/.ssh/config exactly as the user's own `ssh` does (aliases,
IdentityFile, agent, ProxyJump, Match blocks), checks known_hosts with the user's policy, and needs nothing
installed on either side beyond what a Raspberry Pi already has.

Safety:
- BatchMode=yes: never a password prompt and never an interactive "accept this host key?"; an unknown or changed
  host key fails the connection (OpenSSH's StrictHostKeyChecking is left to the user's config, whose default in
  batch mode refuses unknown keys).
- every remote argument goes through shlex.quote, so user text (paths, model names) is never shell syntax;
- ConnectTimeout and ServerAlive keep a dead link from hanging; a command timeout kills the local client, and the
  remote side runs under `timeout` so nothing is left running on the device.
$EDGECNN_SSH_CONFIG names an ssh_config file to use instead of ~/.ssh/config (tests use it).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass

from edgecnn.errors import EdgecnnError

from .profiles import DeviceProfile


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def quote_remote(path: str) -> str:
    """Quote a remote path, keeping a leading ~/ meaning the remote home (quoting alone would make it literal)."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


class SshTransport:
    def __init__(self, profile: DeviceProfile, connect_timeout: int = 10):
        if profile.transport != "ssh":
            raise EdgecnnError(f"device {profile.name} is not reached over SSH")
        self.profile, self.connect_timeout = profile, connect_timeout

    def _ssh(self) -> list[str]:
        command = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                   "-o", f"ConnectTimeout={self.connect_timeout}",
                   "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if os.environ.get("EDGECNN_SSH_CONFIG"):
            command += ["-F", os.environ["EDGECNN_SSH_CONFIG"]]
        if self.profile.ssh_port:
            command += ["-p", str(self.profile.ssh_port)]
        if self.profile.ssh_user:
            command += ["-l", self.profile.ssh_user]
        return command + ["--", self.profile.ssh_host]

    def run_shell(self, script: str, *, timeout: float = 120, stdin: bytes | None = None) -> Result:
        """Run a remote shell snippet that edgecnn built (every user value in it already quoted)."""
        guarded = f"timeout {int(timeout)} sh -c {shlex.quote(script)}"  # the device kills it too if we vanish
        try:
            done = subprocess.run(self._ssh() + [guarded], input=stdin, capture_output=True, timeout=timeout + 15)
        except subprocess.TimeoutExpired:
            raise EdgecnnError(f"device {self.profile.name}: no answer within {timeout:.0f} s") from None
        except FileNotFoundError:
            raise EdgecnnError("the OpenSSH client (ssh) is not installed") from None
        result = Result(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
        if result.returncode == 255:
            raise EdgecnnError(self._explain(result.stderr))
        return result

    def run(self, argv: list[str], *, cwd: str | None = None, timeout: float = 120) -> Result:
        """Run one remote program with arguments; each argument is quoted, never interpreted by the shell."""
        command = " ".join(shlex.quote(a) for a in argv)
        if cwd:
            command = f"cd {quote_remote(cwd)} && {command}"
        return self.run_shell(command, timeout=timeout)

    def _explain(self, stderr: str) -> str:
        lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("Warning:")]
        text = " ".join(lines)
        name, host = self.profile.name, self.profile.ssh_host
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "Host key verification failed" in text:
            return (f"device {name}: host key of {host} is unknown or does not match known_hosts; check the "
                    f"device and add its key (ssh {host} once, interactively, or ssh-keyscan) - edgecnn never "
                    "accepts a host key by itself")
        if "Permission denied" in text:
            return f"device {name}: {host} refused the login (no usable key; edgecnn uses keys and the agent only)"
        if any(s in text for s in ("Connection refused", "timed out", "No route to host", "Could not resolve",
                                   "Name or service not known", "Connection closed", "Connection reset")):
            return f"device {name}: cannot reach {host}: {lines[-1] if lines else 'connection failed'}"
        return f"device {name}: ssh to {host} failed: {lines[-1] if lines else 'exit status 255'}"


CHECK_SCRIPT = r"""
import json, platform, importlib
found = {}
for module, dist in (("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("ai_edge_litert", "ai-edge-litert")):
    try:
        found[dist] = getattr(importlib.import_module(module), "__version__", "installed")
    except Exception:
        found[dist] = None
print(json.dumps({"arch": platform.machine(), "system": platform.platform(), "python": platform.python_version(),
                  "packages": found}))
"""


def check(profile: DeviceProfile, timeout: float = 120) -> dict:
    """What the device is and which runtimes it has, with the pip command for what is missing."""
    import json
    import sys

    if profile.transport == "local":
        argv = [profile.python or sys.executable, "-c", CHECK_SCRIPT]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        result = Result(done.returncode, done.stdout, done.stderr)
    else:
        result = SshTransport(profile).run([profile.python or "python3", "-c", CHECK_SCRIPT], timeout=timeout)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise EdgecnnError(f"device {profile.name}: {profile.python or 'python3'} did not run: {last}")
    try:
        report = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise EdgecnnError(f"device {profile.name}: unexpected answer from the device's python") from None
    wanted = ["numpy"] + [{"onnxruntime": "onnxruntime", "litert": "ai-edge-litert"}[r] for r in profile.runtimes]
    missing = [p for p in wanted if not report["packages"].get(p)]
    report["missing"] = missing
    report["fix"] = f"{profile.python or 'python3'} -m pip install {' '.join(missing)}" if missing else None
    return report
