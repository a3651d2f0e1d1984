"""`edgecnn devices list | show NAME | add NAME`: the device profiles benchmarks run on."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from edgecnn.devices.transport import DEFAULT_WORKDIR

from .console import out
from .options import JsonOpt

app = typer.Typer(no_args_is_help=True, help="Device profiles: where benchmarks run and how to reach them.")


@app.command("list")
def list_devices(as_json: JsonOpt = False) -> None:
    """Built-in and user device profiles."""
    from edgecnn.devices.profiles import list_profiles

    problems: list[str] = []
    profiles = list_profiles(problems)
    for problem in problems:  # reported and skipped: the valid profiles are still listed
        print(f"edgecnn: warning: skipped {problem}", file=sys.stderr)
    if as_json:
        print(json.dumps([p.as_dict() for p in profiles.values()], indent=2))
        return
    table = Table(title="device profiles")
    for column in ("name", "transport", "target", "threads", "runtimes", "description"):
        table.add_column(column)
    for p in profiles.values():
        target = p.ssh_host + (f" (user {p.ssh_user})" if p.ssh_user else "") + (f":{p.ssh_port}" if p.ssh_port else "")
        table.add_row(p.name, p.transport, target or "-", ",".join(map(str, p.threads)), ",".join(p.runtimes),
                      p.description)
    out.print(table)


@app.command("show")
def show(name: str) -> None:
    """One profile, as JSON (with the file it comes from)."""
    from edgecnn.devices.profiles import get_profile

    print(json.dumps(get_profile(name).as_dict(), indent=2))


@app.command("add")
def add(
    name: str,
    ssh_host: Annotated[str, typer.Option("--ssh-host", help="A ~/.ssh/config Host alias or a host name.")],
    ssh_user: Annotated[str, typer.Option("--ssh-user", help="Only if not set in ~/.ssh/config.")] = "",
    ssh_port: Annotated[int | None, typer.Option("--ssh-port", min=1, max=65535)] = None,
    python: Annotated[str, typer.Option(help="Python command on the device.")] = "python3",
    workdir: Annotated[str, typer.Option(help="Work folder on the device.")] = DEFAULT_WORKDIR,
    threads: Annotated[str, typer.Option(help="Comma list of thread counts to sweep.")] = "1,2,4",
    runtimes: Annotated[str, typer.Option(help="Comma list: onnxruntime, litert.")] = "onnxruntime,litert",
    description: Annotated[str, typer.Option(help="What the board is.")] = "",
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an existing user profile.")] = False,
) -> None:
    """Add an SSH device profile to the user's config directory."""
    from edgecnn.devices.profiles import DeviceProfile, add_profile
    from edgecnn.errors import EdgecnnError

    try:
        thread_counts = tuple(int(t) for t in threads.split(",") if t.strip())
    except ValueError:
        raise EdgecnnError(f"--threads must be a comma list of integers, not {threads!r}") from None
    profile = DeviceProfile(name=name, description=description or f"SSH device {ssh_host}", transport="ssh",
                            ssh_host=ssh_host, ssh_user=ssh_user, ssh_port=ssh_port, python=python, workdir=workdir,
                            threads=thread_counts, runtimes=tuple(r.strip() for r in runtimes.split(",") if r.strip()))
    path = add_profile(profile, replace=replace)
    out.print(f"device {name} written to {path}", markup=False, highlight=False)


@app.command("check")
def check(name: str, as_json: JsonOpt = False) -> None:
    """Connect to a device and report its architecture, OS, Python and runtimes (and how to install what is missing)."""
    from edgecnn.devices.profiles import get_profile
    from edgecnn.devices.probe import check as check_device

    report = check_device(get_profile(name))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    packages = ", ".join(f"{k} {v or 'MISSING'}" for k, v in report["packages"].items())
    out.print(f"{name}: {report['arch']}, {report['system']}, Python {report['python']}; {packages}", markup=False,
              highlight=False)
    if report["fix"]:
        out.print(f"missing on {name}: {', '.join(report['missing'])}; install with: {report['fix']}", markup=False,
                  highlight=False)
