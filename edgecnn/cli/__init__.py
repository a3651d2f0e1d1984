"""The `edgecnn` command. Each subcommand lives in its own module and only wires options to library calls."""

from __future__ import annotations

import os
import sys

import typer

from edgecnn import __version__
from edgecnn.errors import EdgecnnError, describe_error, one_line
from edgecnn.malloc import reexec_for_training

from . import bench, bundle, compress, data, deploy, devices, evaluate, export, models, pipeline, report, reproduce, runs, train

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
app.command("deploy")(deploy.deploy)
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
        code = app(standalone_mode=False)  # click's own handling would print usage errors as a boxed panel
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Abort:
        print("edgecnn: interrupted; run the same command again to continue", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as error:  # click's usage errors (typer vendors click): one line, not a panel
        if type(error).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            ctx = getattr(error, "ctx", None)
            command = ctx.command_path if ctx else "edgecnn"
            print(f"edgecnn: error: {one_line(error.format_message())} (see '{command} --help')", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", 2))
    except EdgecnnError as error:
        if os.environ.get("EDGECNN_DEBUG"):
            raise
        print(f"edgecnn: error: {one_line(error)}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        # every file is written atomically and every stage resumes, so an interrupt loses nothing finished
        print("edgecnn: interrupted; run the same command again to continue", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - a bug, not a user error: one line, the traceback on request
        if os.environ.get("EDGECNN_DEBUG"):
            raise
        print(f"edgecnn: internal error: {one_line(describe_error(error))} (EDGECNN_DEBUG=1 shows the traceback; please "
              "report it)", file=sys.stderr)
        sys.exit(1)
