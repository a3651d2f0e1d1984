"""The SSH transport against a real OpenSSH server on 127.0.0.1 (own host key, own authorised key): device check,
argument quoting, and one-line errors for an unknown or changed host key and an unreachable device."""

import json
import os
import subprocess
import sys

import pytest

from edgecnn.devices.profiles import DeviceProfile
from edgecnn.devices.probe import check
from edgecnn.devices.ssh import SshTransport
from edgecnn.errors import EdgecnnError

def profile(**overrides):
    return DeviceProfile(**{"name": "loop", "description": "loopback sshd", "transport": "ssh",
                            "ssh_host": "loopdev", "python": sys.executable, **overrides})


def test_check_reports_the_device(sshd, monkeypatch):
    monkeypatch.setenv("EDGECNN_SSH_CONFIG", sshd["config"]("ok", sshd["dir"] / "known_hosts"))
    report = check(profile())
    assert report["arch"] == os.uname().machine and report["missing"] == [] and report["fix"] is None
    assert report["packages"]["onnxruntime"] and report["packages"]["numpy"]
    missing = check(profile(python="/usr/bin/python3"))  # Debian's python: no runtimes installed there
    assert "onnxruntime" in missing["missing"] and missing["fix"].startswith("/usr/bin/python3 -m pip install ")


def test_arguments_are_never_shell_syntax(sshd, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGECNN_SSH_CONFIG", sshd["config"]("ok", sshd["dir"] / "known_hosts"))
    canary = tmp_path / "pwned"
    evil = f"x; touch {canary}; echo $(id) `id` \"'"
    result = SshTransport(profile()).run([sys.executable, "-c", "import sys; print(sys.argv[1])", evil],
                                         cwd=str(tmp_path))
    assert result.returncode == 0 and result.stdout.rstrip("\n") == evil
    assert not canary.exists()


def test_unknown_host_key_is_refused(sshd, monkeypatch, tmp_path):
    (tmp_path / "empty_known_hosts").write_text("")
    monkeypatch.setenv("EDGECNN_SSH_CONFIG", sshd["config"]("unknown", tmp_path / "empty_known_hosts"))
    with pytest.raises(EdgecnnError, match="host key of loopdev is unknown or does not match known_hosts"):
        check(profile())
    # nothing was accepted, although the ssh_config says accept-new
    assert (tmp_path / "empty_known_hosts").read_text() == ""


def test_changed_host_key_is_refused(sshd, monkeypatch, tmp_path):
    sshd["keygen"](tmp_path / "other")
    other = (tmp_path / "other.pub").read_text().split()
    (tmp_path / "wrong_known_hosts").write_text(f"[127.0.0.1]:{sshd['port']} {other[0]} {other[1]}\n")
    monkeypatch.setenv("EDGECNN_SSH_CONFIG", sshd["config"]("changed", tmp_path / "wrong_known_hosts"))
    with pytest.raises(EdgecnnError, match="does not match known_hosts"):
        check(profile())


def test_unreachable_device_is_a_one_line_error(sshd, monkeypatch):
    monkeypatch.setenv("EDGECNN_SSH_CONFIG", sshd["config"]("closed", sshd["dir"] / "known_hosts", sshd["free_port"]()))
    with pytest.raises(EdgecnnError, match=r"device loop: cannot reach loopdev: .*Connection refused"):
        check(profile())


def test_an_unknown_host_name_says_what_to_configure(sshd, monkeypatch):
    monkeypatch.setenv("EDGECNN_SSH_CONFIG", sshd["config"]("ok", sshd["dir"] / "known_hosts"))
    with pytest.raises(EdgecnnError, match=r"rpi4\.invalid is not a known host name: add a 'Host rpi4\.invalid' "
                                           r"entry .* ~/\.ssh/config.*edgecnn devices check loop"):
        check(profile(ssh_host="rpi4.invalid"))


def test_devices_check_cli(sshd, tmp_path):
    env = {**os.environ, "EDGECNN_CONFIG_DIR": str(tmp_path / "config"),
           "EDGECNN_SSH_CONFIG": sshd["config"]("ok", sshd["dir"] / "known_hosts")}

    def edgecnn(*args):
        return subprocess.run([sys.executable, "-m", "edgecnn", "devices", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    assert edgecnn("add", "loop", "--ssh-host", "loopdev", "--python", sys.executable).returncode == 0
    result = edgecnn("check", "loop", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["arch"] == os.uname().machine
    host = edgecnn("check", "host")
    assert host.returncode == 0 and "Python" in host.stdout
