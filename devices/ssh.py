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
  remote side runs under `timeout` so nothing is left running on the device. Runner commands also get an open
  stdin (hold_stdin) and `--exit-on-eof`: when the connection drops, sshd closes that stdin and the runner ends
  at once instead of finishing its timing loop unseen.
- bundles travel as one tar stream over the same connection and are unpacked into a fresh folder, which replaces
  the old one only once complete; the runner re-checks every sha256 on the device before it runs anything.
$EDGECNN_SSH_CONFIG names an ssh_config file to use instead of ~/.ssh/config (tests use it).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from edgecnn.errors import EdgecnnError
from edgecnn.io import tar_gz

from .profiles import DeviceProfile
from .transport import DeviceLost, Result, Transport, execute


def quote_remote(path: str) -> str:
    """Quote a remote path, keeping a leading ~/ meaning the remote home (quoting alone would make it literal)."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


class SshTransport(Transport):
    def __init__(self, profile: DeviceProfile, connect_timeout: int = 10):
        if profile.transport != "ssh":
            raise EdgecnnError(f"device {profile.name} is not reached over SSH")
        super().__init__(profile)
        self.connect_timeout = connect_timeout

    def _ssh(self) -> list[str]:
        return ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", *self._destination()]

    def _destination(self) -> list[str]:
        """ssh's options naming the device: the config file in use, port and user overrides, the host."""
        options = ["-F", os.environ["EDGECNN_SSH_CONFIG"]] if os.environ.get("EDGECNN_SSH_CONFIG") else []
        if self.profile.ssh_port:
            options += ["-p", str(self.profile.ssh_port)]
        if self.profile.ssh_user:
            options += ["-l", self.profile.ssh_user]
        return options + ["--", self.profile.ssh_host]

    def login(self) -> list[str]:
        return ["ssh", *(a for a in self._destination() if a != "--")]

    def run_shell(self, script: str, *, timeout: float = 120, stdin: bytes | None = None,
                  hold_stdin: bool = False) -> Result:
        """Run a remote shell snippet that edgecnn built (every user value in it already quoted)."""
        guarded = f"timeout {int(timeout)} sh -c {shlex.quote(script)}"  # the device kills it too if we vanish
        result = execute(self._ssh() + [guarded], timeout=timeout + 15, what=f"device {self.profile.name}",
                         stdin=stdin, hold_stdin=hold_stdin)
        if result.returncode == 255:
            raise DeviceLost(self._explain(result.stderr))
        return result

    def run(self, argv: list[str], *, cwd: str | None = None, timeout: float = 120,
            hold_stdin: bool = False) -> Result:
        """Run one remote program with arguments; each argument is quoted, never interpreted by the shell."""
        command = " ".join(shlex.quote(a) for a in argv)
        if cwd:
            command = f"cd {quote_remote(cwd)} && {command}"
        return self.run_shell(command, timeout=timeout, hold_stdin=hold_stdin)

    def put_bundle(self, folder: Path, name: str) -> str:
        """Unpack the bundle into `workdir/name` on the device. The name carries the manifest's hash, so a folder of
        that name that the runner verifies is this bundle already and is used as it is; otherwise the archive is
        unpacked into a folder of its own (two benches at once never share one) that replaces the old one only
        once complete."""
        self.check_bundle_name(name)
        workdir = self.workdir
        target = f"{workdir.rstrip('/')}/{name}"
        final = quote_remote(target)
        present = self.run_shell(f"cd {final} && {shlex.quote(self.python)} runner.py verify", timeout=300)
        if present.returncode == 0:
            return target
        script = (f"mkdir -p {quote_remote(workdir)} && staging=$(mktemp -d {quote_remote(target)}.partial-XXXXXX) "
                  f"&& tar -xzf - --no-same-owner --strip-components=1 -C \"$staging\" && "
                  f"rm -rf {final} && mv \"$staging\" {final} || {{ rm -rf \"$staging\"; exit 1; }}")
        result = self.run_shell(script, timeout=300, stdin=tar_gz(Path(folder)))
        if result.returncode != 0:
            raise EdgecnnError(f"device {self.profile.name}: could not unpack the bundle in {target}: "
                               f"{result.last_error_line()}")
        return target

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
        if any(s in text for s in ("Could not resolve", "Name or service not known")):
            return (f"device {name}: {host} is not a known host name: add a 'Host {host}' entry (HostName, User) to "
                    f"~/.ssh/config, or point the profile at the board (edgecnn devices add {name} --ssh-host "
                    f"ADDRESS), then edgecnn devices check {name}")
        if any(s in text for s in ("Connection refused", "timed out", "No route to host", "Connection closed",
                                   "Connection reset")):
            return (f"device {name}: cannot reach {host}: {lines[-1] if lines else 'connection failed'} (is it on "
                    f"and is its sshd running? edgecnn devices check {name})")
        return f"device {name}: ssh to {host} failed: {lines[-1] if lines else 'exit status 255'}"
