"""Shared rich consoles: tables to stdout, progress and messages to stderr (so --json output stays clean)."""

from __future__ import annotations

from rich.console import Console

# When piped, rich would wrap tables at 80 columns; a wide virtual width keeps one row per line for grep/less.
out = Console(width=None if Console().is_terminal else 200)
err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 200)
