"""`edgecnn models`: the zoo, measured, next to the paper's published numbers."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from edgecnn.errors import EdgecnnError

from .console import err, out


def models(
    names: Annotated[list[str] | None, typer.Argument(
        help="Models or wildcards (exp13, 'vgg19-*'); all when omitted.", show_default=False)] = None,
    num_classes: Annotated[int, typer.Option("--num-classes", "-c", min=1, help="Classifier outputs.")] = 10,
    in_chans: Annotated[int, typer.Option("--in-chans", help="Input channels: 3 (RGB) or 1 (grey).")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
    quirks: Annotated[bool, typer.Option("--quirks", help="List each model's reproduced paper quirks.")] = False,
) -> None:
    """List the model zoo: parameters, fvcore MFLOPs (1x3x32x32, eval) and fp32 size, beside the paper's figures."""
    from edgecnn.compress.zoo import list_models, resolve
    from edgecnn.compress.zoo.catalog import model_cards

    if in_chans not in (1, 3):
        raise EdgecnnError(f"--in-chans must be 1 or 3, got {in_chans}")
    selected: list[str] = []
    for pattern in names or ["*"]:
        matches = list_models(pattern) if any(c in pattern for c in "*?[") else [resolve(pattern)]
        if not matches:
            raise EdgecnnError(f"no model matches {pattern!r} (see 'edgecnn models')")
        selected += [m for m in matches if m not in selected]

    with Progress(console=err, transient=True, disable=as_json or not err.is_terminal) as progress:
        task = progress.add_task("measuring", total=len(selected))
        cards = model_cards(selected, num_classes, in_chans,
                            progress=lambda name: progress.update(task, advance=1, description=name))
    if as_json:
        print(json.dumps([card.to_dict() for card in cards], indent=2))
        return
    out.print(_table(cards, num_classes, in_chans))
    if quirks:
        for card in cards:
            for quirk in card.quirks:
                out.print(f"[bold]{card.name}[/]: {quirk}")
    out.print("MFLOPs as the paper counts them: fvcore, 1 multiply-add = 1 FLOP, plus BatchNorm and pooling. "
              "Paper columns: published figures (* = README erratum, corrected; r = recomputed, never published).")


def _delta(ours: float, theirs: float | None, digits: int) -> str:
    if theirs is None:
        return ""
    diff = round(ours - theirs, digits)
    return "[green]=[/]" if diff == 0 else f"[red]{diff:+.{digits}f}[/]"


def _table(cards, num_classes: int, in_chans: int) -> Table:
    table = Table(title=f"edgecnn model zoo ({num_classes} classes, {in_chans}x32x32 input)")
    for column, justify in [("model", "left"), ("techniques", "left"), ("params", "right"), ("MFLOPs", "right"),
                            ("size MiB", "right"), ("paper params", "right"), ("Δ", "right"),
                            ("paper MFLOPs", "right"), ("Δ", "right"), ("paper top-1 %", "right")]:
        table.add_column(column, justify=justify)
    for card in cards:
        paper = card.paper
        if paper is None:
            paper_cells = ["-", "", "-", "", "-"]
        else:
            mark = "r" if paper.source == "recomputed" else ("*" if paper.expected("mflops") != paper.mflops else "")
            flops = paper.expected("mflops")
            paper_cells = [f"{paper.params:,}", _delta(card.params, paper.params, 0), f"{flops:.2f}{mark}",
                           _delta(card.mflops, flops, 2), "-" if paper.top1 is None else f"{paper.top1:.2f}"]
        table.add_row(card.name, ", ".join(card.techniques) or "-", f"{card.params:,}", f"{card.mflops:.2f}",
                      f"{card.size_mib:.2f}", *paper_cells)
    return table
