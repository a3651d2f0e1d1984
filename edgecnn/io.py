"""File helpers every stage uses: atomic writes (no half-written file survives a crash or Ctrl-C)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the mode open() would
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def cache_dir() -> Path:
    """Where edgecnn keeps re-computable data: $EDGECNN_CACHE_DIR, else $XDG_CACHE_HOME/edgecnn, else ~/.cache/edgecnn."""
    if os.environ.get("EDGECNN_CACHE_DIR"):
        return Path(os.environ["EDGECNN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecnn"


def sha256_file(path: str | os.PathLike[str]) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


LOCK_NAME = ".edgecnn.lock"
_held: dict[str, list] = {}  # lock file -> [descriptor, depth]: re-entrant within one process


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str = "folder"):
    """Hold the writer's lock of `folder` (a lock file inside it) while the block runs: a second edgecnn process
    that wants to write the same run or artifact folder is refused with one line instead of interleaving its files
    with ours. The lock is the operating system's (flock), so a killed process never leaves it held."""
    import fcntl

    from edgecnn.errors import EdgecnnError

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = str((folder / LOCK_NAME).resolve())
    if path in _held:
        _held[path][1] += 1
        try:
            yield
        finally:
            _held[path][1] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise EdgecnnError(f"{what} {folder} is being written by another edgecnn process (pid {holder}); wait for it "
                           "to finish, or write somewhere else") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held[path] = [fd, 1]
    try:
        yield
    finally:
        del _held[path]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> None:
    """Delete what atomic writes of a killed process left in `folder` (`.NAME.*.tmp`). Call it only while holding
    the folder's lock: then no other writer's temporary file can be among them."""
    for leftover in Path(folder).glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def tar_gz(folder: Path) -> bytes:
    """`folder`'s files as a .tar.gz held in memory, under the folder's own name (a bundle archive, or the stream
    that puts a bundle on a device)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(Path(folder).iterdir()):
            tar.add(path, arcname=f"{Path(folder).name}/{path.name}", recursive=False)
    return buffer.getvalue()
