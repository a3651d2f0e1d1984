"""What long work tells its caller, the one interface for it: `task(description, total)` yields a function to
call with each finished unit, `note(message)` says one thing. The library default is silent; the CLI draws it
(edgecnn/cli/progress.py: rich bars on a terminal, plain lines otherwise)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class Progress:
    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda n: None

    def note(self, message: str) -> None:
        pass
