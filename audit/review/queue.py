"""The review queue: flagged rows filtered, sorted and paged by DuckDB over RUN/flags.parquet.

Nothing here holds the flags in memory: each call is one query that reads the columns it needs. The
latest decisions (audit.review.decisions.DecisionLog, an Arrow table) are joined in DuckDB. Rows that
audit.render_policy.never_render marks are in no queue: they are only counted and listed by row id
(``never_rendered``). Caption search is a case-insensitive literal substring, never a pattern.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from audit.review.decisions import DECISIONS, UNDECIDED
from audit.review.run import ReviewRun, glob_escaped, has_view, severity_rank, sql_literal
from audit.schemas import SEVERITIES

PAGE_COLUMNS = (
    "row_id", "key", "shard_id", "row_index", "severity", "severity_rank", "reasons", "caption", "url",
    "scores", "known_bad_match", "render_blocked", "pos",
)  # fmt: skip
SORTS = ("severity", "row")  # and "score:<name>" for any score of the run's flags


@dataclass(frozen=True)
class QueueFilter:
    """Which flagged rows a queue holds; every field left at its default filters nothing."""

    reasons: tuple[str, ...] = ()  # any of these
    min_severity: str | None = None
    # (score name, low, high): inclusive, None for open; a row without that score does not match
    score_ranges: tuple[tuple[str, float | None, float | None], ...] = ()
    shards: tuple[str, ...] = ()
    clusters: tuple[int, ...] = ()
    decision: str | None = None  # one of DECISIONS, or UNDECIDED
    text: str = ""  # in the caption, case-insensitively, as typed
    row_ids: tuple[str, ...] | None = None  # only these rows (a cluster's or an expansion's)

    def __post_init__(self) -> None:
        if self.min_severity is not None:
            severity_rank(self.min_severity)
        if self.decision is not None and self.decision not in (*DECISIONS, UNDECIDED):
            raise ValueError(
                f"unknown decision {self.decision!r} (known: {', '.join((*DECISIONS, UNDECIDED))})"
            )


@dataclass(frozen=True)
class QueueSort:
    by: str = "severity"  # one of SORTS, or "score:<name>"
    descending: bool = True

    def __post_init__(self) -> None:
        if self.by not in SORTS and not (self.by.startswith("score:") and len(self.by) > len("score:")):
            raise ValueError(f"unknown sort {self.by!r} (known: {', '.join(SORTS)}, score:<name>)")


@dataclass
class _Query:
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    join_decisions: bool = False


def _cursor(run: ReviewRun, f: QueueFilter | None = None) -> duckdb.DuckDBPyConnection:
    cur = run.db()
    latest = run.decision_log.refresh()
    cur.register("latest_rows", latest)
    cur.execute(
        "CREATE OR REPLACE TEMP VIEW latest AS SELECT row_id, decision AS latest_decision, "
        "reviewer AS latest_reviewer, decided_at AS latest_decided_at FROM latest_rows"
    )
    if f is not None and f.row_ids is not None:
        cur.register("only_rows", pa.table({"row_id": pa.array(f.row_ids, pa.string())}))
    return cur


def _build(run: ReviewRun, f: QueueFilter) -> _Query:
    q = _Query(where=["pos NOT IN (SELECT pos FROM never_rendered)"])  # never_render, found at open
    if f.reasons:
        q.where.append("list_has_any(reasons, ?)")
        q.params.append(list(f.reasons))
    if f.min_severity is not None:
        q.where.append("severity_rank >= ?")
        q.params.append(severity_rank(f.min_severity))
    for name, low, high in f.score_ranges:
        if low is not None:
            q.where.append("scores[?] >= ?")
            q.params += [name, float(low)]
        if high is not None:
            q.where.append("scores[?] <= ?")
            q.params += [name, float(high)]
        if low is None and high is None:
            q.where.append("scores[?] IS NOT NULL")
            q.params.append(name)
    if f.shards:
        q.where.append("list_contains(?, shard_id)")
        q.params.append(list(f.shards))
    if f.clusters:
        if has_view(run, "neighbours"):
            q.where.append("row_id IN (SELECT row_id FROM neighbours WHERE list_contains(?, cluster))")
            q.params.append([int(c) for c in f.clusters])
        else:
            q.where.append("false")  # no clusters in this run: no row is in one
    if f.decision is not None:
        q.join_decisions = True
        q.where.append("coalesce(latest_decision, ?) = ?")
        q.params += [UNDECIDED, f.decision]
    if f.text:
        # ILIKE with every wildcard escaped: a literal, case-insensitive substring (faster than
        # lower() + contains, which copies every caption)
        q.where.append("caption ILIKE ? ESCAPE '\\'")
        q.params.append("%" + "".join("\\" + c if c in "%_\\" else c for c in f.text) + "%")
    if f.row_ids is not None:
        q.where.append("row_id IN (SELECT row_id FROM only_rows)")
    return q


def _from(q: _Query) -> str:
    return "flags LEFT JOIN latest USING (row_id)" if q.join_decisions else "flags"


def _keys(sort: QueueSort) -> tuple[str, str, list[Any]]:
    """(the sort key columns a result keeps, its ORDER BY over them, their params). File position
    breaks ties, so every order is total and pages never overlap."""
    d = "DESC" if sort.descending else "ASC"
    if sort.by == "severity":
        return "severity_rank AS k", f"k {d}, pos", []
    if sort.by == "row":
        return "shard_id AS k, row_index AS k2", f"k {d}, k2 {d}", []
    return "scores[?] AS k", f"k {d} NULLS LAST, pos", [sort.by.removeprefix("score:")]


_TABLE_NUMBERS = itertools.count()  # result table names, unique in the process


class ResultCache:
    """The last few filter results of a run as small DuckDB tables (each hit's file position and sort
    key), so a filter is scanned once and its count, pages, next and previous are queries over a
    table of a few bytes per hit. Pages are a top-N over that table, not a full sort: a sort by a
    score of a million rows costs its one scan, not a sort of a million rows.

    Keyed by filter and sort, and by the decisions version when the filter depends on decisions (a
    decision changes who is undecided; it changes nothing else). Every use holds the lock: a table is
    never dropped while another session reads it.
    """

    KEPT = 4  # ~16 bytes per hit: a million-hit result is ~16 MB

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._tables: OrderedDict[tuple, str] = OrderedDict()

    def table(self, run: ReviewRun, cur: duckdb.DuckDBPyConnection, f: QueueFilter, sort: QueueSort) -> str:
        """The result table of (f, sort), made if needed; the caller holds ``lock``."""
        key = (f, sort, run.decision_log.version if f.decision is not None else None)
        if key in self._tables:
            self._tables.move_to_end(key)
            return self._tables[key]
        q = _build(run, f)
        keys, _, extra_params = _keys(sort)
        name = f"queue_result_{next(_TABLE_NUMBERS)}"
        cur.execute(
            f"CREATE TABLE {name} AS SELECT pos, {keys} FROM {_from(q)} WHERE {' AND '.join(q.where)}",
            extra_params + q.params,
        )
        self._tables[key] = name
        while len(self._tables) > self.KEPT:
            _, old = self._tables.popitem(last=False)
            cur.execute(f"DROP TABLE IF EXISTS {old}")
        return name


def _results(run: ReviewRun) -> ResultCache:
    with run._lock:
        if not hasattr(run, "_queue_results"):
            run._queue_results = ResultCache()  # type: ignore[attr-defined]
        return run._queue_results  # type: ignore[attr-defined]


@contextlib.contextmanager
def _filtered(
    run: ReviewRun, f: QueueFilter, sort: QueueSort | None
) -> Iterator[tuple[duckdb.DuckDBPyConnection, str, str]]:
    """(cursor, cached result table of the filter, ORDER BY clause of the sort), under the cache's
    lock for as long as the caller reads the result."""
    cache = _results(run)
    with cache.lock:
        cur = _cursor(run, f)
        sort = sort or QueueSort()
        name = cache.table(run, cur, f, sort)
        yield cur, name, _keys(sort)[1]


def count(run: ReviewRun, f: QueueFilter, sort: QueueSort | None = None) -> int:
    """Rows in the filtered queue (``sort`` only picks which cached result to count)."""
    with _filtered(run, f, sort) as (cur, name, _):
        return int(cur.execute(f"SELECT count(*) FROM {name}").fetchone()[0])  # type: ignore[index]


def page_ids(
    run: ReviewRun, f: QueueFilter, sort: QueueSort | None = None, offset: int = 0, limit: int = 50
) -> pa.Table:
    """(row_id, pos) of rows ``offset .. offset + limit`` of the queue, in queue order: a lookup in the
    filter's result, then the row ids of those file positions."""
    with _filtered(run, f, sort) as (cur, name, order):
        got = cur.execute(
            f"SELECT pos FROM {name} ORDER BY {order} LIMIT ? OFFSET ?", [int(limit), int(offset)]
        ).fetchall()
    positions = [int(p) for (p,) in got]
    if not positions:
        return pa.table({"row_id": pa.array([], pa.string()), "pos": pa.array([], pa.int64())})
    found = dict(
        run.db()
        .execute(f"SELECT pos, row_id FROM flags WHERE pos IN ({', '.join(map(str, positions))})")
        .fetchall()
    )
    return pa.table({"row_id": pa.array([found[p] for p in positions], pa.string()), "pos": positions})


def rows_at(run: ReviewRun, positions: Sequence[int]) -> pa.Table:
    """PAGE_COLUMNS, never_render, the latest decision (latest_decision, latest_reviewer; NULL when
    undecided) and the cluster of the flags at file positions ``positions``, in that order. A literal
    list of positions lets DuckDB skip every row group that holds none of them."""
    if not positions:
        empty = _cursor(run).sql(f"SELECT {', '.join(PAGE_COLUMNS)}, never_render FROM flags LIMIT 0")
        return _with_decisions_and_clusters(run, empty.to_arrow_table(), [])
    listed = ", ".join(str(int(p)) for p in positions)
    got = (
        _cursor(run)
        .sql(f"SELECT {', '.join(PAGE_COLUMNS)}, never_render FROM flags WHERE pos IN ({listed})")
        .to_arrow_table()
    )
    where = {p: i for i, p in enumerate(got.column("pos").to_pylist())}
    got = got.take(pa.array([where[int(p)] for p in positions if int(p) in where], pa.int64()))
    return _with_decisions_and_clusters(run, got, got.column("shard_id").to_pylist())


def _with_decisions_and_clusters(run: ReviewRun, rows: pa.Table, shards: list[str]) -> pa.Table:
    cur = _cursor(run)
    cur.register("page_rows", rows.select(["row_id"]).append_column("n", pa.array(range(rows.num_rows))))
    files = [
        run.folder.url_of("neighbours", f"{s}.parquet")
        for s in dict.fromkeys(shards)
        if has_view(run, "neighbours") and run.has("neighbours", f"{s}.parquet")
    ]  # only the page's shards' neighbours files, not the corpus'
    listed = ", ".join(sql_literal(glob_escaped(u)) for u in files)
    nb = (
        f"(SELECT row_id, cluster FROM read_parquet([{listed}], union_by_name = true) "
        "WHERE row_id IN (SELECT row_id FROM page_rows))"
        if files
        else "(SELECT NULL::VARCHAR AS row_id, NULL::INTEGER AS cluster LIMIT 0)"
    )
    extra = cur.sql(
        f"SELECT p.n, d.latest_decision, d.latest_reviewer, CAST(c.cluster AS INTEGER) AS cluster "
        f"FROM page_rows p LEFT JOIN latest d USING (row_id) LEFT JOIN {nb} c USING (row_id) ORDER BY p.n"
    ).to_arrow_table()
    for name in ("latest_decision", "latest_reviewer", "cluster"):
        rows = rows.append_column(name, extra.column(name))
    return rows


def page(
    run: ReviewRun, f: QueueFilter, sort: QueueSort | None = None, offset: int = 0, limit: int = 50
) -> pa.Table:
    """Rows ``offset .. offset + limit`` of the filtered, sorted queue (see ``rows_at`` for columns)."""
    return rows_at(run, page_ids(run, f, sort, offset, limit).column("pos").to_pylist())


def row_ids(run: ReviewRun, f: QueueFilter, sort: QueueSort | None = None) -> pa.Array:
    """Every row id of the filtered queue in queue order (what a bulk decision over a filter takes)."""
    with _filtered(run, f, sort) as (cur, name, order):
        table = cur.sql(
            f"SELECT f.row_id FROM (SELECT pos, row_number() OVER (ORDER BY {order}) AS n FROM {name}) h "
            "JOIN flags f USING (pos) ORDER BY h.n"
        ).to_arrow_table()
    return table.column("row_id").combine_chunks()


def row_at(run: ReviewRun, f: QueueFilter, sort: QueueSort, position: int) -> str | None:
    """The row id at ``position`` (0-based) of the queue, None past its end."""
    if position < 0:
        return None
    got = page_ids(run, f, sort, position, 1)
    return got.column("row_id")[0].as_py() if got.num_rows else None


def next_after_decision(
    run: ReviewRun, f: QueueFilter, sort: QueueSort, position: int, row_id: str
) -> tuple[str | None, int]:
    """Where the reviewer goes once ``row_id`` (at ``position``) is decided: the next row of the queue
    and its position. If the decision took the row out of the queue (an "undecided" queue), the next
    row now sits at the same position; one query over the two rows from ``position`` tells which."""
    got = page_ids(run, f, sort, position, 2).column("row_id").to_pylist()
    if got and got[0] == row_id:  # still in the queue: go one further
        return (got[1], position + 1) if len(got) > 1 else (None, position + 1)
    return (got[0], position) if got else (None, position)


# --- what the filters can choose from --------------------------------------------------------------


@dataclass(frozen=True)
class Facets:
    reasons: tuple[str, ...]
    severities: tuple[str, ...]
    shards: tuple[str, ...]
    scores: tuple[str, ...]  # score names of the run's flags
    clusters: tuple[int, ...]


def facets(run: ReviewRun) -> Facets:
    cur = run.db()
    reasons = [
        r for (r,) in cur.execute("SELECT DISTINCT unnest(reasons) AS r FROM flags ORDER BY r").fetchall()
    ]
    present = {s for (s,) in cur.execute("SELECT DISTINCT severity FROM flags").fetchall()}
    shards = [s for (s,) in cur.execute("SELECT DISTINCT shard_id FROM flags ORDER BY shard_id").fetchall()]
    scores = [
        s
        for (s,) in cur.execute(
            "SELECT DISTINCT unnest(map_keys(scores)) AS s FROM flags ORDER BY s"
        ).fetchall()
    ]
    clusters: list[int] = []
    if has_view(run, "clusters"):
        clusters = [
            int(c) for (c,) in cur.execute("SELECT cluster FROM clusters ORDER BY cluster").fetchall()
        ]
    return Facets(
        tuple(reasons),
        tuple(s for s in SEVERITIES if s in present),
        tuple(shards),
        tuple(scores),
        tuple(clusters),
    )


# --- rows that are never rendered ----------------------------------------------------------------


def never_rendered_count(run: ReviewRun) -> int:
    return int(run.db().execute("SELECT count(*) FROM never_rendered").fetchone()[0])  # type: ignore[index]


def never_rendered(run: ReviewRun, offset: int = 0, limit: int = 100) -> pa.Table:
    """Row ids only (in flags order) of the flagged rows never rendered anywhere."""
    return (
        run.db()
        .sql(
            "SELECT row_id FROM never_rendered ORDER BY pos LIMIT ? OFFSET ?",
            params=[limit, offset],
        )
        .to_arrow_table()
    )


def flags_of(run: ReviewRun, ids: Sequence[str]) -> pa.Table:
    """The flag rows (PAGE_COLUMNS and never_render) of ``ids`` that are flagged, in the order given."""
    cur = run.db()
    cur.register(
        "wanted", pa.table({"row_id": pa.array(list(ids), pa.string()), "n": pa.array(range(len(ids)))})
    )
    return cur.sql(
        f"SELECT {', '.join('f.' + c for c in PAGE_COLUMNS)}, f.never_render FROM wanted w "
        "JOIN flags f USING (row_id) ORDER BY w.n"
    ).to_arrow_table()
