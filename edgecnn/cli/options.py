"""Options shared by several commands (Annotated aliases), so each is spelled and documented once."""

from __future__ import annotations

from typing import Annotated

import typer

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="cifar10, cifar100 or fashion-mnist.")]
DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help="Folder holding the dataset files.")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Download the dataset into --data-dir (needs network).")]
InChansOpt = Annotated[int | None, typer.Option("--in-chans", help="1 or 3; grey datasets can be replicated to 3.")]
RunsDirOpt = Annotated[str | None, typer.Option("--runs-dir", help="Where runs live (default ./runs, or $EDGECNN_RUNS_DIR).")]
CheckpointOpt = Annotated[str | None, typer.Option("--checkpoint", help="A checkpoint file (best.pt / last.pt).")]
RunOpt = Annotated[str | None, typer.Option("--run", help="A run directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
