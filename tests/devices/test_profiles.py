"""Device profiles: the built-in ones, user profiles (add, override, refuse bad ones), and the CLI."""

import json
import os
import subprocess
import sys

import pytest

from edgecnn.devices.profiles import DeviceProfile, add_profile, get_profile, list_profiles
from edgecnn.errors import EdgecnnError


@pytest.fixture(autouse=True)
def user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECNN_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config" / "devices"


def test_builtin_profiles():
    profiles = list_profiles()
    assert {"host", "rpi3", "rpi4", "rpi5", "generic-arm64"} <= set(profiles)
    assert profiles["host"].transport == "local"
    rpi4 = profiles["rpi4"]
    assert (rpi4.transport, rpi4.ssh_host, rpi4.python, rpi4.threads) == ("ssh", "rpi4", "python3", (1, 2, 4))
    assert "Cortex-A72" in rpi4.description


def test_add_then_read_back_and_override(user_config):
    board = DeviceProfile(name="jetson", description='Orin "nano"', transport="ssh", ssh_host="jetson.lan",
                          ssh_user="me", ssh_port=2222, python="/usr/bin/python3", threads=(1, 6))
    path = add_profile(board)
    assert path == user_config / "jetson.toml"
    assert get_profile("jetson") == board
    with pytest.raises(EdgecnnError, match="exists"):
        add_profile(board)
    add_profile(DeviceProfile(name="rpi4", description="my pi", transport="ssh", ssh_host="pi.lan"))
    assert get_profile("rpi4").ssh_host == "pi.lan"  # the user's profile wins over the built-in


@pytest.mark.parametrize("profile,message", [
    (DeviceProfile(name="Bad Name", description="", transport="ssh", ssh_host="x"), "use lower-case letters"),
    (DeviceProfile(name="p", description="", transport="ssh", ssh_host="-oProxyCommand=evil"), "is not a host name"),
    (DeviceProfile(name="p", description="", transport="ssh"), "needs ssh_host"),
    (DeviceProfile(name="p", description="", transport="telnet", ssh_host="x"), "transport must be one of"),
    (DeviceProfile(name="p", description="", transport="ssh", ssh_host="x", threads=(0,)), "positive integers"),
    (DeviceProfile(name="p", description="", transport="ssh", ssh_host="x", runtimes=("tvm",)), "unknown runtime"),
])
def test_bad_profiles_are_refused(profile, message):
    with pytest.raises(EdgecnnError, match=message):
        add_profile(profile)


def test_broken_user_files_are_one_line_errors(user_config):
    user_config.mkdir(parents=True)
    (user_config / "broken.toml").write_text("transport = [unclosed")
    with pytest.raises(EdgecnnError, match="is not readable TOML"):
        get_profile("broken")
    (user_config / "broken.toml").write_text('transport = "ssh"\nssh_host = "a"\npasword = "x"\n')
    with pytest.raises(EdgecnnError, match="unknown key 'pasword'"):
        get_profile("broken")


def test_unknown_device_suggests_a_name():
    with pytest.raises(EdgecnnError, match=r"unknown device .rpi6.; did you mean rpi5, rpi4, rpi3\? "
                                           r"\(edgecnn devices list\)"):
        get_profile("rpi6")


def test_cli(tmp_path):
    env = {**os.environ, "EDGECNN_CONFIG_DIR": str(tmp_path / "cli-config")}

    def edgecnn(*args):
        return subprocess.run([sys.executable, "-m", "edgecnn", "devices", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    added = edgecnn("add", "board", "--ssh-host", "board.lan", "--threads", "1,2")
    assert added.returncode == 0, added.stderr
    listed = json.loads(edgecnn("list", "--json").stdout)
    assert "board" in [p["name"] for p in listed] and "rpi5" in [p["name"] for p in listed]
    shown = json.loads(edgecnn("show", "board").stdout)
    assert shown["threads"] == [1, 2] and shown["ssh_host"] == "board.lan"
    missing = edgecnn("show", "rpi9")
    assert missing.returncode == 2 and missing.stderr.startswith("edgecnn: error: unknown device 'rpi9'")
    bad = edgecnn("add", "x", "--ssh-host", "h", "--threads", "two")
    assert bad.returncode == 2 and "--threads must be a comma list" in bad.stderr


@pytest.mark.parametrize("text,message", [
    ('transport = "ssh"\nssh_host = 5\n', "ssh_host must be a string, not 5"),
    ('transport = "ssh"\nssh_host = "x"\nthreads = "1,2"\n', "threads must be a list of integers"),
    ('transport = "ssh"\nssh_host = "x"\nssh_port = "22"\n', "ssh_port must be a positive integer"),
    ('transport = "ssh"\nssh_host = "x"\nwarp = 9\n', "unknown key 'warp'"),
    ('transport = "ssh\n', "is not readable TOML"),
])
def test_one_broken_user_profile_is_skipped_by_everything_that_does_not_need_it(user_config, text, message):
    user_config.mkdir(parents=True)
    (user_config / "broken.toml").write_text(text)
    problems = []
    assert "host" in list_profiles(problems) and "broken" not in list_profiles()
    assert len(problems) == 1 and "broken.toml" in problems[0] and message in problems[0]
    assert get_profile("host").transport == "local"  # bench --device host never reads the broken file
    with pytest.raises(EdgecnnError, match=message):
        get_profile("broken")
    env = {**os.environ, "EDGECNN_CONFIG_DIR": str(user_config.parent)}
    listed = subprocess.run([sys.executable, "-m", "edgecnn", "devices", "list", "--json"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert listed.returncode == 0 and "host" in {p["name"] for p in json.loads(listed.stdout)}
    assert listed.stderr.strip().splitlines() == [f"edgecnn: warning: skipped {problems[0]}"]
