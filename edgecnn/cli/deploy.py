"""`edgecnn deploy`: a bundle installed on a device, and the commands that run it there."""

from __future__ import annotations

import dataclasses
import json
import shlex
from typing import Annotated

import typer

from .console import err, out
from .options import JsonOpt


def deploy(
    device: Annotated[str, typer.Option("--device", help="Device profile (edgecnn devices list).")],
    bundle: Annotated[str | None, typer.Option("--bundle", help="A bundle folder or .tar.gz (default: the newest bundle).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Use the newest export of this model.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset of that export.")] = None,
    workdir: Annotated[str | None, typer.Option("--workdir", help="Folder on the device the bundle goes into (default: the profile's, else ~/edgecnn-bench).")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds allowed to each command on the device.")] = 300,
    exports_root: Annotated[str, typer.Option("--exports-root", help="Where exports are searched.")] = "artifacts",
    as_json: JsonOpt = False,
) -> None:
    """Install a bundle on a device (verified there by sha256), say which of its files the device can run, and
    print the exact commands that run it there.

    Without --bundle/--model: the newest bundle, or its export's bundle-DEVICE (made by 'edgecnn bundle --device')
    when there is one.
    """
    from edgecnn.bench.harness import locate_bundle
    from edgecnn.devices.deploy import deploy as install
    from edgecnn.devices.profiles import get_profile
    from edgecnn.export.bundle import Manifest

    profile = get_profile(device)
    if workdir:
        profile = dataclasses.replace(profile, workdir=workdir)
    note = lambda text: err.print(text, highlight=False, markup=False)  # noqa: E731
    folder, _ = locate_bundle(bundle, model, dataset, exports_root, note=note, device=device)
    deployment = install(profile, folder, Manifest.read(folder), timeout=timeout)
    if as_json:
        print(json.dumps(deployment.as_dict(), indent=2))
        return
    where = f" ({shlex.join(deployment.login)})" if deployment.login else ""
    out.print(f"installed {folder} on {device}{where} in {deployment.path}: {deployment.verified}", markup=False,
              highlight=False, soft_wrap=True)
    if deployment.missing:
        packages = sorted(set(deployment.missing.values()))
        out.print(f"{device} cannot run {', '.join(deployment.missing)} yet: needs {', '.join(packages)}",
                  markup=False, highlight=False, soft_wrap=True)
    out.print("run it there:" if not deployment.login else "run it there (log in first):", markup=False,
              highlight=False, soft_wrap=True)
    for line in ([shlex.join(deployment.login)] if deployment.login else []) + deployment.commands:
        out.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
