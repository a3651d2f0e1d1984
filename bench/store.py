"""The results store: every measurement `edgecnn bench` makes, one SQLite row each, kept across sessions.

SQLite because it is one file, ships with Python, survives a crash mid-write (each row is its own transaction,
so a benchmark that dies half-way keeps every row it finished) and answers "how did exp13 int8 do on the rpi4
last month" with one query. Default file: results/bench.sqlite under the working folder, beside runs/ and
artifacts/ (the project's data), or $EDGECNN_RESULTS.

Nothing secret goes in: device names and the board's own report (arch, CPU, versions), never SSH hosts, users
or keys.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

COLUMNS = {  # name: SQL type; JSON-valued columns are stored as text
    "session": "TEXT", "timestamp": "TEXT", "device": "TEXT", "arch": "TEXT", "cpu": "TEXT",
    "model": "TEXT", "dataset": "TEXT", "bundle": "TEXT", "file": "TEXT", "format": "TEXT",
    "precision": "TEXT", "runtime": "TEXT", "threads": "INTEGER", "batch": "INTEGER", "runs": "INTEGER",
    "warmup": "INTEGER", "load_ms": "REAL", "first_ms": "REAL", "p50_ms": "REAL", "p90_ms": "REAL",
    "p99_ms": "REAL", "mean_ms": "REAL", "std_ms": "REAL", "min_ms": "REAL", "max_ms": "REAL",
    "peak_rss_mib": "REAL", "accuracy": "REAL", "sample_images": "INTEGER", "host_agreement": "REAL",
    "predictions": "TEXT", "versions": "TEXT", "machine": "TEXT",
}
JSON_COLUMNS = ("predictions", "versions", "machine")


def default_path() -> Path:
    return Path(os.environ.get("EDGECNN_RESULTS") or Path("results") / "bench.sqlite")


class ResultStore:
    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
            db.execute(f"CREATE TABLE IF NOT EXISTS measurements (id INTEGER PRIMARY KEY, {columns})")

    def _connect(self) -> sqlite3.Connection:
        # A connection per call: rows come from one thread per device, and sqlite3 connections are per-thread.
        return sqlite3.connect(self.path, timeout=30)

    def add(self, row: dict) -> None:
        values = [json.dumps(row.get(k)) if k in JSON_COLUMNS else row.get(k) for k in COLUMNS]
        with self._connect() as db:  # commits on leaving the block: the row is on disk before we go on
            db.execute(f"INSERT INTO measurements ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                       values)

    def set_host_agreement(self, session: str, device: str, file: str, agreement: float) -> None:
        with self._connect() as db:
            db.execute("UPDATE measurements SET host_agreement = ? WHERE session = ? AND device = ? AND file = ?",
                       (agreement, session, device, file))

    def rows(self, session: str | None = None) -> list[dict]:
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            query = "SELECT * FROM measurements" + (" WHERE session = ?" if session else "") + " ORDER BY id"
            found = [dict(r) for r in db.execute(query, (session,) if session else ())]
        for row in found:
            for key in JSON_COLUMNS:
                row[key] = json.loads(row[key]) if row[key] else None
        return found
