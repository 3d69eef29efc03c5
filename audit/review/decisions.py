"""Reviewer decisions: append-only rows in RUN/decisions.db (SQLite) keyed by the corpus-unique row id.

A change of mind is a new row; the latest row per row id wins (by insertion order, not by clock:
reviewers' clocks differ) and the full history stays for the audit trail. Bulk decisions over a
selection, a filter result or a cluster are one transaction: all rows are written or none. Two
reviewers deciding at once each append their own row (SQLite serialises writers; the busy timeout
waits for the other's commit), so nothing is lost and the later commit is the latest decision.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audit.append_only_db import BUSY_TIMEOUT_S, append_only_ddl, read_only, utc_now
from audit.errors import InputFileError

if TYPE_CHECKING:
    from audit.review.run import ReviewRun

Decision = Literal["confirm_harmful", "false_positive", "needs_escalation"]
DECISIONS: tuple[str, ...] = get_args(Decision)
UNDECIDED = "undecided"  # filter value for rows nobody has decided on yet
# what the dashboard's buttons say: confirm, dismiss, escalate
DECISION_LABELS = {
    "confirm_harmful": "Confirm harmful",
    "false_positive": "Dismiss (false positive)",
    "needs_escalation": "Escalate",
}

_DDL = append_only_ddl(
    "decisions",
    f"""row_id TEXT NOT NULL,
    key TEXT NOT NULL,  -- the dataset's label, kept for people reading the database
    decision TEXT NOT NULL CHECK (decision IN ({", ".join(repr(d) for d in DECISIONS)})),
    reviewer TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    decided_at TEXT NOT NULL""",
)
_COLUMNS = "id, row_id, key, decision, reviewer, note, decided_at"
_INSERT = (
    "INSERT INTO decisions (row_id, key, decision, reviewer, note, decided_at) VALUES (?, ?, ?, ?, ?, ?)"
)

# One row per decision (history) or per row id (latest); what exports and the queue's join use.
DECISIONS_TABLE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("decision", pa.string(), nullable=False),
        pa.field("reviewer", pa.string(), nullable=False),
        pa.field("note", pa.string(), nullable=False),
        pa.field("decided_at", pa.string(), nullable=False),
    ],
    metadata={"mmaudit.schema": "decisions", "mmaudit.version": "1"},
)


@dataclass(frozen=True)
class DecisionRow:
    id: int
    row_id: str
    key: str
    decision: Decision
    reviewer: str
    note: str
    decided_at: str  # UTC, ISO 8601


def db_path(run: ReviewRun) -> Path:
    if run.folder.fs.protocol not in ("file", ("file", "local")):
        raise InputFileError(f"{run.folder.url}: decisions.db needs a local run folder (SQLite)")
    return Path(run.folder.decisions)


def _check_keyed_by_row(conn: sqlite3.Connection, path: Path) -> bool:
    """Whether the decisions table exists; InputFileError if an older mmaudit keyed it by dataset key."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
    if columns and "row_id" not in columns:
        raise InputFileError(f"{path}: decisions keyed by dataset key (an older mmaudit); move it aside")
    return bool(columns)


_SCHEMA_OBJECTS = {"decisions", "decisions_by_row", "decisions_no_update", "decisions_no_delete"}


def _schema_complete(conn: sqlite3.Connection) -> bool:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'decisions%'")}
    return names >= _SCHEMA_OBJECTS


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A writing connection; the body runs as one transaction, committed on success."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        _check_keyed_by_row(conn, path)  # before the DDL: its index needs row_id
        if not _schema_complete(conn):  # the DDL commits (an fsync): only when something is missing
            conn.executescript(_DDL)
        with conn:
            yield conn
    finally:
        conn.close()


def _read(path: Path) -> contextlib.AbstractContextManager[sqlite3.Connection | None]:
    """A read-only connection (None when there is no database or no table yet): reading never
    creates or changes the database."""
    return read_only(path, lambda conn: _check_keyed_by_row(conn, path))


def _check(decision: str, reviewer: str) -> str:
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r} (known: {', '.join(DECISIONS)})")
    reviewer = reviewer.strip()
    if not reviewer:
        raise ValueError("a decision needs a reviewer name")
    return reviewer


def record_decision(run: ReviewRun, row_id: str, decision: str, reviewer: str, note: str = "") -> DecisionRow:
    """Append one decision row; ValueError for an unknown decision, an empty reviewer, or a row that
    is neither flagged nor scored in the run."""
    from audit.review.details import scored_keys
    from audit.review.run import flag_row

    reviewer = _check(decision, reviewer)
    try:
        key = flag_row(run, row_id)["key"]
    except KeyError:
        key = scored_keys(run, [row_id]).get(row_id)
        if key is None:
            raise ValueError(f"{row_id!r} is neither a flagged nor a scored row of run {run.name}") from None
    decided_at = utc_now()
    with _connect(db_path(run)) as conn:
        cur = conn.execute(
            _INSERT,
            (row_id, key, decision, reviewer, note, decided_at),
        )
        decision_id = int(cur.lastrowid or 0)
    return DecisionRow(decision_id, row_id, key, decision, reviewer, note, decided_at)  # type: ignore[arg-type]


def record_decisions(
    run: ReviewRun,
    row_ids: Iterable[str] | pa.Array | pa.ChunkedArray,
    decision: str,
    reviewer: str,
    note: str = "",
) -> int:
    """One decision for many rows (a selection, a filter result, a cluster) in one transaction: every
    row is written or none. Returns the rows written (each row id once). A row no rule flagged may be
    decided when it is a scored row of the run (a "more like this" find). ValueError, and nothing
    written, when the decision or reviewer is invalid or any row is neither flagged nor scored."""
    from audit.review.details import scored_keys

    reviewer = _check(decision, reviewer)
    ids = row_ids if isinstance(row_ids, pa.Array | pa.ChunkedArray) else pa.array(list(row_ids), pa.string())
    unique = pc.unique(ids.cast(pa.string()))  # in order of first appearance
    wanted = pa.table({"row_id": unique, "n": pa.array(range(len(unique)), pa.int64())})
    cur = run.db()
    cur.register("wanted", wanted)
    # keys from flags (NULL: not a flagged row), in the order given
    found = cur.execute(
        "SELECT w.row_id, f.key FROM wanted w LEFT JOIN (SELECT row_id, any_value(key) AS key FROM flags "
        "WHERE row_id IN (SELECT row_id FROM wanted) GROUP BY row_id) f USING (row_id) ORDER BY w.n"
    ).fetchall()
    unflagged = [r for r, k in found if k is None]
    scored = scored_keys(run, unflagged) if unflagged else {}
    found = [(r, k if k is not None else scored.get(r)) for r, k in found]
    missing = [r for r, k in found if k is None]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(found)} rows are neither flagged nor scored rows of run {run.name} "
            f"(e.g. {missing[0]!r}); nothing was recorded"
        )
    if not found:
        return 0
    decided_at = utc_now()
    with _connect(db_path(run)) as conn:
        conn.executemany(
            _INSERT,
            ((r, k, decision, reviewer, note, decided_at) for r, k in found),
        )
    return len(found)


def decision_history(run: ReviewRun, row_id: str | None = None) -> list[DecisionRow]:
    """Every decision row, oldest first (only ``row_id``'s when given)."""
    query, params = f"SELECT {_COLUMNS} FROM decisions", ()
    if row_id is not None:
        query, params = query + " WHERE row_id = ?", (row_id,)
    with _read(db_path(run)) as conn:
        rows = conn.execute(query + " ORDER BY id", params).fetchall() if conn else []
    return [DecisionRow(*r) for r in rows]


def load_decisions(run: ReviewRun) -> dict[str, DecisionRow]:
    """The latest decision per row id (by insertion order, not clock: reviewers' clocks differ)."""
    return {row.row_id: row for row in decision_history(run)}


def _table(rows: Sequence[tuple]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in DECISIONS_TABLE_SCHEMA]
    return pa.Table.from_arrays(
        [pa.array(list(c), f.type) for c, f in zip(cols, DECISIONS_TABLE_SCHEMA, strict=True)],
        schema=DECISIONS_TABLE_SCHEMA,
    )


def _latest_of(table: pa.Table) -> pa.Table:
    if not table.num_rows:
        return table
    last = table.group_by("row_id").aggregate([("id", "max")]).column("id_max")
    return table.filter(pc.is_in(table.column("id"), value_set=last))


class DecisionLog:
    """The latest decision per row id as an Arrow table, shared by every session of a dashboard
    process. ``refresh`` reads only the rows appended since the last call (any process may append).

    Reading rows by ``id > last`` misses nothing: SQLite has one writer at a time and AUTOINCREMENT
    ids grow with each insert, so rows are committed in id order.
    """

    def __init__(self, run: ReviewRun) -> None:
        self._path = db_path(run)
        self._lock = threading.Lock()
        self._last_id = 0
        self._latest = DECISIONS_TABLE_SCHEMA.empty_table()

    def refresh(self) -> pa.Table:
        with self._lock, _read(self._path) as conn:
            if conn is not None:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM decisions WHERE id > ? ORDER BY id", (self._last_id,)
                ).fetchall()
                if rows:
                    self._latest = _latest_of(pa.concat_tables([self._latest, _table(rows)]))
                    self._last_id = int(rows[-1][0])
            return self._latest

    @property
    def version(self) -> int:
        """The id of the newest decision seen by the last refresh (0: none): a cache key."""
        return self._last_id


def decisions_table(run: ReviewRun, latest_only: bool = False) -> pa.Table:
    """Every decision row (DECISIONS_TABLE_SCHEMA, oldest first), or only the latest per row id."""
    if latest_only:
        return run.decision_log.refresh().sort_by("id")
    with _read(db_path(run)) as conn:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM decisions ORDER BY id").fetchall() if conn else []
    return _table(rows)


def export_decisions(run: ReviewRun, fmt: Literal["parquet", "csv"], latest_only: bool = False) -> bytes:
    """The decisions as a Parquet or CSV file's bytes (what the dashboard's download buttons hand over)."""
    table = decisions_table(run, latest_only)
    buf = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(table, buf, compression="zstd")
        return buf.getvalue()
    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r} (parquet or csv)")
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(table.column_names)
    writer.writerows(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True))
    return text.getvalue().encode("utf-8")
