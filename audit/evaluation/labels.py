"""Labels: append-only rows in RUN/evaluation/labels.db (SQLite) keyed by row id, one per judgement.

A label says which harms a pair shows (any of sexual, violence, hate, harassment, pii), or that it is
benign, or that the labeller is unsure; it carries the reviewer's name. A change of mind is a new row:
the latest row per (row id, reviewer) wins, by insertion order, and the history stays. Update and
delete are refused by triggers in the database itself, as for decisions.db.

A row's *first* labeller is the reviewer whose first label on it came first; the estimates use that
reviewer's latest label, and a second reviewer's (double-labelled rows) serves agreement only.
Only rows of the drawn sample take labels; never-render rows are not in it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from audit.append_only_db import BUSY_TIMEOUT_S, append_only_ddl, has_table, read_only, utc_now
from audit.evaluation.files import EvalRun

HARMS = ("sexual", "violence", "hate", "harassment", "pii")
CATEGORIES = (*HARMS, "benign", "unsure")

_HARM_SUM = " + ".join(HARMS)
_DDL = append_only_ddl(
    "labels",
    f"""row_id TEXT NOT NULL,
    reviewer TEXT NOT NULL CHECK (length(trim(reviewer)) > 0),
    {", ".join(f"{c} INTEGER NOT NULL CHECK ({c} IN (0, 1))" for c in CATEGORIES)},
    note TEXT NOT NULL DEFAULT '',
    labelled_at TEXT NOT NULL,
    -- harms, or benign alone, or unsure alone
    CHECK ({_HARM_SUM} + benign + unsure >= 1),
    CHECK (benign = 0 OR {_HARM_SUM} + unsure = 0),
    CHECK (unsure = 0 OR {_HARM_SUM} + benign = 0)""",
)
_COLUMNS = ("id", "row_id", "reviewer", *CATEGORIES, "note", "labelled_at")
_INSERT = f"INSERT INTO labels ({', '.join(_COLUMNS[1:])}) VALUES ({', '.join('?' for _ in _COLUMNS[1:])})"

LABELS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("reviewer", pa.string(), nullable=False),
        *(pa.field(c, pa.bool_(), nullable=False) for c in CATEGORIES),
        pa.field("note", pa.string(), nullable=False),
        pa.field("labelled_at", pa.string(), nullable=False),
    ],
    metadata={"mmaudit.schema": "labels", "mmaudit.version": "1"},
)


@dataclass(frozen=True)
class LabelRow:
    id: int
    row_id: str
    reviewer: str
    categories: tuple[str, ...]  # in CATEGORIES order
    note: str
    labelled_at: str  # UTC, ISO 8601


def check_categories(categories: Iterable[str]) -> tuple[str, ...]:
    """The categories in CATEGORIES order; ValueError for an unknown one or a mix with benign/unsure."""
    given = set(categories)
    unknown = sorted(given - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown label category {unknown[0]!r} (known: {', '.join(CATEGORIES)})")
    if not given:
        raise ValueError("a label needs at least one category (a harm, benign or unsure)")
    for alone in ("benign", "unsure"):
        if alone in given and len(given) > 1:
            raise ValueError(f"{alone!r} is a label on its own, not combined with {sorted(given - {alone})}")
    return tuple(c for c in CATEGORIES if c in given)


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        conn.executescript(_DDL)
        with conn:
            yield conn
    finally:
        conn.close()


def _read(path: Path) -> contextlib.AbstractContextManager[sqlite3.Connection | None]:
    """Read-only (None when there is no database yet): reading never creates or changes it."""
    return read_only(path, lambda conn: has_table(conn, "labels"))


def _sampled(run: EvalRun, row_ids: list[str]) -> None:
    """ValueError unless every row id is in the drawn sample (nothing is written then)."""
    sample = run.sample().column("row_id")
    known = pc.is_in(pa.array(row_ids, pa.string()), value_set=sample).to_pylist()
    missing = [r for r, ok in zip(row_ids, known, strict=True) if not ok]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(row_ids)} rows are not in the labelling sample of run "
            f"{run.summary.run_name} (e.g. {missing[0]!r}); nothing was recorded"
        )


def record_labels(
    run: EvalRun, labels: Iterable[tuple[str, Iterable[str]]], reviewer: str, note: str = ""
) -> list[LabelRow]:
    """Append one label per (row id, categories), all in one transaction (all or none). ValueError,
    and nothing written, for an empty reviewer, a bad category set or a row not in the sample."""
    reviewer = reviewer.strip()
    if not reviewer:
        raise ValueError("a label needs a reviewer name")
    checked = [(row_id, check_categories(cats)) for row_id, cats in labels]
    if not checked:
        return []
    _sampled(run, [r for r, _ in checked])
    at = utc_now()
    out = []
    with _connect(run.labels_db) as conn:
        for row_id, cats in checked:
            flags = [int(c in cats) for c in CATEGORIES]
            cur = conn.execute(_INSERT, (row_id, reviewer, *flags, note, at))
            out.append(LabelRow(int(cur.lastrowid or 0), row_id, reviewer, cats, note, at))
    return out


def record_label(
    run: EvalRun, row_id: str, categories: Iterable[str], reviewer: str, note: str = ""
) -> LabelRow:
    return record_labels(run, [(row_id, categories)], reviewer, note)[0]


def labels_table(run: EvalRun) -> pa.Table:
    """Every label row (LABELS_SCHEMA), oldest first."""
    with _read(run.labels_db) as conn:
        rows = (
            conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM labels ORDER BY id").fetchall() if conn else []
        )
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in _COLUMNS]
    arrays = [pa.array([bool(v) for v in c] if f.type == pa.bool_() else list(c), f.type)
              for c, f in zip(cols, LABELS_SCHEMA, strict=True)]  # fmt: skip
    return pa.Table.from_arrays(arrays, schema=LABELS_SCHEMA)


def label_history(run: EvalRun, row_id: str | None = None) -> list[LabelRow]:
    table = labels_table(run)
    out = []
    for r in table.to_pylist():
        if row_id is None or r["row_id"] == row_id:
            cats = tuple(c for c in CATEGORIES if r[c])
            out.append(LabelRow(r["id"], r["row_id"], r["reviewer"], cats, r["note"], r["labelled_at"]))
    return out


def label_count(run: EvalRun) -> int:
    with _read(run.labels_db) as conn:
        return int(conn.execute("SELECT count(*) FROM labels").fetchone()[0]) if conn else 0


def latest_labels(run: EvalRun) -> pa.Table:
    """The latest label per (row id, reviewer), with ``order``: 1 for the row's first labeller (whose
    first label on it came first), 2 for the next, and so on."""
    table = labels_table(run)
    if not table.num_rows:
        return table.append_column("order", pa.array([], pa.int64()))
    keys = ["row_id", "reviewer"]
    firsts = table.group_by(keys).aggregate([("id", "min"), ("id", "max")])
    latest = table.filter(pc.is_in(table.column("id"), value_set=firsts.column("id_max")))
    ranked = firsts.sort_by([("row_id", "ascending"), ("id_min", "ascending")]).to_pylist()
    order: dict[tuple[str, str], int] = {}
    count: dict[str, int] = {}
    for r in ranked:
        count[r["row_id"]] = count.get(r["row_id"], 0) + 1
        order[(r["row_id"], r["reviewer"])] = count[r["row_id"]]
    column = [
        order[(a, b)]
        for a, b in zip(
            latest.column("row_id").to_pylist(), latest.column("reviewer").to_pylist(), strict=True
        )
    ]
    return latest.append_column("order", pa.array(column, pa.int64())).sort_by("id")
