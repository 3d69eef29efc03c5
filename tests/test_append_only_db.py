"""The append-only SQLite table both stores use, and read-only connections that never create one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from audit.append_only_db import append_only_ddl, has_table, read_only, utc_now


def test_rows_can_be_appended_never_changed_or_deleted(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    conn = sqlite3.connect(path)
    conn.executescript(append_only_ddl("notes", "row_id TEXT NOT NULL,\n    body TEXT NOT NULL"))
    conn.executescript(
        append_only_ddl("notes", "row_id TEXT NOT NULL,\n    body TEXT NOT NULL")
    )  # idempotent
    with conn:
        conn.execute("INSERT INTO notes (row_id, body) VALUES ('s:1', 'a'), ('s:1', 'b')")
    for statement in ("UPDATE notes SET body = 'c'", "DELETE FROM notes"):
        with pytest.raises(sqlite3.IntegrityError, match="notes are append-only"):
            conn.execute(statement)
    assert conn.execute("SELECT id, body FROM notes ORDER BY id").fetchall() == [(1, "a"), (2, "b")]
    plan = " ".join(
        r[-1] for r in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM notes WHERE row_id = 's:1'")
    )
    assert "notes_by_row" in plan
    conn.close()


def test_reading_never_creates_a_database_or_reads_a_missing_table(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    with read_only(missing, lambda c: True) as conn:
        assert conn is None
    assert not missing.exists()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE other (x)").connection.close()
    with read_only(empty, lambda c: has_table(c, "notes")) as conn:
        assert conn is None
    with read_only(empty, lambda c: has_table(c, "other")) as conn:
        assert conn is not None
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("INSERT INTO other VALUES (1)")


def test_timestamps_are_utc_iso_8601_with_microseconds() -> None:
    stamp = utc_now()
    assert stamp.endswith("+00:00") and len(stamp.split(".")[1]) == len("123456+00:00")
