"""The `edgecnn` command. Each subcommand lives in its own module and only wires options to library calls."""

from __future__ import annotations

import os
import sys

import typer

from edgecnn import __version__
from edgecnn.errors import EdgecnnError
from edgecnn.malloc import reexec_for_training

from . import bench, bundle, compress, data, devices, evaluate, export, models, pipeline, report, reproduce, runs, train

app = typer.Typer(name="edgecnn", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Build, compress, export and benchmark small CNN classifiers for edge devices.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgecnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """edgecnn: compress -> export -> bundle -> bench."""


app.command("models")(models.models)
app.command("train")(train.train)
app.command("eval")(evaluate.evaluate)
app.command("export")(export.export)
app.command("bundle")(bundle.bundle)
app.command("bench")(bench.bench)
app.command("runs")(runs.runs)
app.command("report")(report.report)
app.command("pipeline")(pipeline.pipeline)
app.add_typer(compress.app, name="compress")
app.add_typer(data.app, name="data")
app.add_typer(devices.app, name="devices")
app.add_typer(reproduce.app, name="reproduce")


def main() -> None:
    """Entry point: a user error (EdgecnnError) becomes one line on stderr and exit status 2.

    Set EDGECNN_DEBUG=1 to see the traceback instead.
    """
    reexec_for_training(sys.argv)  # training commands run under tcmalloc when installed (edgecnn/malloc.py)
    try:
        app()
    except EdgecnnError as error:
        if os.environ.get("EDGECNN_DEBUG"):
            raise
        print(f"edgecnn: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
