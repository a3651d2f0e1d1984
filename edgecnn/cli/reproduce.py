"""`edgecnn reproduce`: regenerate the paper's results from the zoo and from edgecnn runs."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .console import out
from .options import JsonOpt, RunsDirOpt

app = typer.Typer(no_args_is_help=True, help="Regenerate the paper's tables from the zoo and from runs.")


@app.command("paper-tables")
def paper_tables(
    out_file: Annotated[str | None, typer.Option("--out", help="Also write the Markdown to this file.")] = None,
    runs_dir: RunsDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The paper's four architecture tables (params, MFLOPs, size) from the zoo beside the published ones; the
    accuracy column from runs on CIFAR-10/100 when they exist."""
    from edgecnn.io import atomic_write_text
    from edgecnn.report.paper_tables import paper_tables as build, tables_markdown
    from edgecnn.runs import runs_root

    tables = build(runs_root(runs_dir))
    if as_json:
        print(json.dumps(tables, indent=2))
    else:
        out.print(tables_markdown(tables), markup=False, highlight=False)
    if out_file:
        atomic_write_text(out_file, tables_markdown(tables) + "\n")
