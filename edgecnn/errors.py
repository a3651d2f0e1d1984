"""Errors a user can cause. The CLI prints them as one line and exits non-zero; nothing else is caught."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgecnnError(Exception):
    """A user-facing error: bad name, missing file, unreachable device. Printed without a traceback."""

    exit_code = 2


class UnknownNameError(EdgecnnError, KeyError):
    """A name (model, dataset, format, device, ...) that is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = ""):
        self.kind, self.name = kind, name
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
        msg = f"unknown {kind} {name!r}"
        if close:
            msg += f"; did you mean {', '.join(close)}?"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def one_line(text: str) -> str:
    """`text` as one line of output: a user's value with a newline in it (a path, a name) cannot split a message."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


def describe_error(error: BaseException, limit: int = 240) -> str:
    """`Type: first line` of an exception for a one-line report, cut at a word boundary when long."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."
