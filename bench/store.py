"""The results store: every measurement `edgecnn bench` makes, one SQLite row each, kept across sessions.

SQLite because it is one file, ships with Python, survives a crash mid-write (each row is its own transaction,
so a benchmark that dies half-way keeps every row it finished) and answers "how did exp13 int8 do on the rpi4
last month" with one query. Default file: results/bench.sqlite under the working folder, beside runs/ and
artifacts/ (the project's data), or $EDGECNN_RESULTS.

No measurement is ever lost to a busy or broken store: a write waits for the store's lock with SQLite's own
back-off (up to $EDGECNN_STORE_WAIT seconds, default 30), and a row that still cannot be written goes, as one
JSON line, into a side file beside the store (`bench.sqlite.pending.jsonl`). `rows()` reads it too, and the next
write that gets the lock merges it (rows carry a unique id, so a merge interrupted half-way never duplicates).

Nothing secret goes in: device names and the board's own report (arch, CPU, versions), never SSH hosts, users
or keys.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path

from edgecnn.errors import EdgecnnError

COLUMNS = {  # name: SQL type; JSON-valued columns are stored as text
    "session": "TEXT", "timestamp": "TEXT", "device": "TEXT", "arch": "TEXT", "cpu": "TEXT",
    "model": "TEXT", "dataset": "TEXT", "bundle": "TEXT", "file": "TEXT", "format": "TEXT",
    "precision": "TEXT", "runtime": "TEXT", "threads": "INTEGER", "batch": "INTEGER", "runs": "INTEGER",
    "warmup": "INTEGER", "load_ms": "REAL", "first_ms": "REAL", "p50_ms": "REAL", "p90_ms": "REAL",
    "p99_ms": "REAL", "mean_ms": "REAL", "std_ms": "REAL", "min_ms": "REAL", "max_ms": "REAL",
    "peak_rss_mib": "REAL", "accuracy": "REAL", "top5": "REAL", "sample_images": "INTEGER", "host_agreement": "REAL",
    "predictions": "TEXT", "versions": "TEXT", "machine": "TEXT",
    # a file that could not be measured is a row too: status "failed" and the reason
    "status": "TEXT", "error": "TEXT", "row_id": "TEXT",
    # how the device judges files ("timing" or "instructions"), the graph form, and on the emulated boards the
    # executed aarch64 instructions per inference (one thread), the emulator's time (no board's) and the hot symbols
    "judge": "TEXT", "form": "TEXT", "instructions": "REAL", "emulated_ms": "REAL", "profile": "TEXT",
    "target": "TEXT",  # the CPU the device profile names (cortex-a72, ...): ties a real Pi to its emulated board
}
JSON_COLUMNS = ("predictions", "versions", "machine", "profile")


def default_path() -> Path:
    return Path(os.environ.get("EDGECNN_RESULTS") or Path("results") / "bench.sqlite")


def _wait_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("EDGECNN_STORE_WAIT", "30")))
    except ValueError:
        return 30.0


#: what a row is ranked by: its device judge's measurement (lower is better)
JUDGE_METRIC = {"timing": "p50_ms", "instructions": "instructions"}


def metric_of(row: dict) -> str:
    """The column a row's device is judged by (p50 latency, or executed instructions on an emulated board)."""
    return JUDGE_METRIC.get(row.get("judge") or "timing", "p50_ms")


class ResultStore:
    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path else default_path()
        self.pending = self.path.with_name(self.path.name + ".pending.jsonl")
        self.wait = _wait_seconds()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        #: why the last write went to the side file (None when the store took it)
        self.deferred: str | None = None

    # -------------------------------------------------------------------------------------------- writing

    def add(self, row: dict) -> dict:
        """Store one measurement (a row gets its `row_id` here); returns the row as stored."""
        row = {**row, "row_id": row.get("row_id") or uuid.uuid4().hex, "status": row.get("status") or "ok"}
        self._write([{"op": "add", "row": row}])
        return row

    def set_host_agreement(self, row_id: str, agreement: float) -> None:
        self._write([{"op": "agreement", "row_id": row_id, "host_agreement": agreement}])

    def _write(self, ops: list[dict]) -> None:
        """Apply `ops` together with every pending op, in one transaction; if the store cannot be written in time,
        keep `ops` in the side file instead."""
        try:
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")  # the write lock, waited for (SQLite's busy handler backs off)
                self._ensure_schema(db)
                claimed = self._claim_pending()
                for op in [op for path in claimed for op in _read_ops(path)] + ops:
                    self._apply(db, op)
            for path in claimed:
                path.unlink(missing_ok=True)
            self.deferred = None
        except sqlite3.Error as error:
            self._keep_pending(ops)
            self.deferred = (f"results store {self.path} could not be written ({error}); kept in {self.pending}, "
                             "merged at the next write")

    def _claim_pending(self) -> list[Path]:
        """Pending files to merge now. Called with the write lock held, so no other merger runs; appenders write to
        the side file itself, which is renamed first so none of their lines is lost."""
        claimed = sorted(self.pending.parent.glob(self.pending.name + ".merging-*"))  # left by a killed merge
        if self.pending.is_file():
            target = self.pending.with_name(f"{self.pending.name}.merging-{uuid.uuid4().hex[:12]}")
            os.replace(self.pending, target)
            claimed.append(target)
        return claimed

    def _keep_pending(self, ops: list[dict]) -> None:
        data = "".join(json.dumps(op) + "\n" for op in ops).encode()
        fd = os.open(self.pending, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)  # one append per call: lines of concurrent writers never interleave
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _apply(db: sqlite3.Connection, op: dict) -> None:
        if op["op"] == "add":
            row = op["row"]
            values = [json.dumps(row.get(k)) if k in JSON_COLUMNS else row.get(k) for k in COLUMNS]
            db.execute(f"INSERT OR IGNORE INTO measurements ({', '.join(COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(COLUMNS))})", values)
        elif op["op"] == "agreement":
            db.execute("UPDATE measurements SET host_agreement = ? WHERE row_id = ?",
                       (op["host_agreement"], op["row_id"]))

    # -------------------------------------------------------------------------------------------- reading

    def rows(self, session: str | None = None) -> list[dict]:
        """Every measurement, oldest first: the store's rows and those still waiting in the side file."""
        found: dict[str, dict] = {}
        if self.path.is_file():
            try:
                with self._connect() as db:
                    db.row_factory = sqlite3.Row
                    if db.execute("SELECT name FROM sqlite_master WHERE name = 'measurements'").fetchone():
                        for record in db.execute("SELECT * FROM measurements ORDER BY id"):
                            row = {name: None for name in COLUMNS} | dict(record)  # older stores: fewer columns
                            for key in JSON_COLUMNS:
                                row[key] = json.loads(row[key]) if row[key] else None
                            found[row["row_id"] or f"id-{row['id']}"] = row
            except sqlite3.Error as error:
                raise EdgecnnError(f"results store {self.path} cannot be read: {error}") from error
        paths = sorted(self.pending.parent.glob(self.pending.name + ".merging-*"))
        for op in [op for path in paths + [self.pending] if path.is_file() for op in _read_ops(path)]:
            if op["op"] == "add":
                found.setdefault(op["row"]["row_id"], dict(op["row"]))
            elif op["row_id"] in found:
                found[op["row_id"]]["host_agreement"] = op["host_agreement"]
        rows = list(found.values())
        for row in rows:
            row.setdefault("status", "ok")
            row["status"] = row["status"] or "ok"
        return [r for r in rows if session is None or r.get("session") == session]

    # -------------------------------------------------------------------------------------------- schema

    def _connect(self) -> sqlite3.Connection:
        # A connection per call: rows come from one thread per device, and sqlite3 connections are per-thread.
        # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE) and end with the block.
        return _Connection(self.path, timeout=self.wait)

    @staticmethod
    def _ensure_schema(db: sqlite3.Connection) -> None:
        columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        db.execute(f"CREATE TABLE IF NOT EXISTS measurements (id INTEGER PRIMARY KEY, {columns})")
        have = {r[1] for r in db.execute("PRAGMA table_info(measurements)")}
        for name, kind in COLUMNS.items():  # stores written by older versions lack the newer columns
            if name not in have:
                db.execute(f"ALTER TABLE measurements ADD COLUMN {name} {kind}")
        db.execute("CREATE UNIQUE INDEX IF NOT EXISTS measurements_row_id ON measurements (row_id)")


class _Connection:
    """sqlite3 connection as a context manager that commits on success, rolls back on error and always closes
    (sqlite3's own `with` commits but leaves the file open)."""

    def __init__(self, path: Path, timeout: float):
        self.db = sqlite3.connect(path, timeout=timeout, isolation_level=None)

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if self.db.in_transaction:
                self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.db.close()


def _read_ops(path: Path) -> list[dict]:
    """The ops of a side file; a line cut short by a crash is skipped (its row was never acknowledged)."""
    ops = []
    try:
        text = path.read_text()
    except OSError:
        return ops
    for line in text.splitlines():
        try:
            op = json.loads(line)
        except ValueError:
            continue
        if isinstance(op, dict) and op.get("op") in ("add", "agreement"):
            ops.append(op)
    return ops
