"""What the append-only SQLite stores (RUN/decisions.db, RUN/evaluation/labels.db) share: a table's
DDL (an id per row in insertion order, an index by row id, triggers that refuse UPDATE and DELETE
in the database itself) and read-only connections, which never create or change a database."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

BUSY_TIMEOUT_S = 30  # several reviewers on one run may write at the same moment


def append_only_ddl(table: str, columns: str) -> str:
    """``table`` with ``columns`` (SQL column definitions, after its ``id``), indexed by
    ``(row_id, id)``, append-only."""
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {columns}
);
CREATE INDEX IF NOT EXISTS {table}_by_row ON {table} (row_id, id);
CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} are append-only'); END;
CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} are append-only'); END;
"""


@contextlib.contextmanager
def read_only(
    path: Path, usable: Callable[[sqlite3.Connection], bool]
) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection to ``path``; None when there is no database, or ``usable(conn)`` says
    it holds no table to read yet."""
    if not path.exists():
        yield None
        return
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        yield conn if usable(conn) else None
    finally:
        conn.close()


def has_table(conn: sqlite3.Connection, table: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        is not None
    )


def utc_now() -> str:
    """A row's timestamp: UTC, ISO 8601, microseconds (order comes from the id, not from clocks)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
