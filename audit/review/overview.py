"""Aggregates for the overview and quarantine pages, each one DuckDB query over the run's Parquet."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from audit.render_policy import NEVER_RENDER_REASONS
from audit.review.run import ReviewRun, has_view

HISTOGRAM_BINS = 20
# quarantine rows' never_render: a hash-list match (the row's own outcome) or a never-render reason
_QUARANTINE_NEVER_RENDER = (
    "(coalesce(known_bad_match, false) OR "
    f"list_contains([{', '.join(repr(r) for r in sorted(NEVER_RENDER_REASONS))}], reason))"
)


def by_reason_severity(run: ReviewRun) -> pa.Table:
    """(reason, severity, severity_rank, flags): a row with two reasons counts under each."""
    return (
        run.db()
        .sql(
            "SELECT reason, severity, any_value(severity_rank) AS severity_rank, count(*) AS flags "
            "FROM (SELECT unnest(reasons) AS reason, severity, severity_rank FROM flags) "
            "GROUP BY reason, severity ORDER BY reason, severity_rank"
        )
        .to_arrow_table()
    )


_HISTOGRAMS = """
WITH s AS (SELECT unnest(map_keys(scores)) AS score, unnest(map_values(scores)) AS value FROM flags),
r AS (SELECT score, min(value) AS lo, max(value) AS hi FROM s WHERE isfinite(value) GROUP BY score),
b AS (
    SELECT s.score, r.lo, r.hi,
           CASE WHEN r.hi = r.lo THEN 0
                ELSE least(CAST(floor((s.value - r.lo) / (r.hi - r.lo) * $1) AS INTEGER), $1 - 1) END AS bin
    FROM s JOIN r USING (score) WHERE isfinite(s.value)
)
SELECT score, lo + bin * (hi - lo) / $1 AS bin_start, lo + (bin + 1) * (hi - lo) / $1 AS bin_end,
       count(*) AS flags
FROM b GROUP BY score, bin, lo, hi ORDER BY score, bin
"""


def score_histograms(run: ReviewRun, bins: int = HISTOGRAM_BINS) -> pa.Table:
    """(score, bin_start, bin_end, flags) over the scores the flags' rules looked at, ``bins`` equal bins
    between each score's min and max."""
    return (
        run.db()
        .sql(
            _HISTOGRAMS,
            params=[bins],
        )
        .to_arrow_table()
    )


def shard_rates(run: ReviewRun) -> pa.Table:
    """(shard_id, rows_in, flagged, flag_rate) per audited shard, highest rate first."""
    records = [s for s in run.manifest.shards if s.status == "done"]
    shards = pa.table(
        {
            "shard_id": pa.array([s.shard_id for s in records], pa.string()),
            "rows_in": pa.array([s.rows_in for s in records], pa.int64()),
        }
    )
    cur = run.db()
    cur.register("shards", shards)
    return cur.sql(
        "SELECT s.shard_id, s.rows_in, coalesce(f.n, 0) AS flagged, "
        "CASE WHEN s.rows_in > 0 THEN coalesce(f.n, 0) / s.rows_in ELSE 0 END AS flag_rate "
        "FROM shards s LEFT JOIN (SELECT shard_id, count(*) AS n FROM flags GROUP BY shard_id) f "
        "USING (shard_id) ORDER BY flag_rate DESC, s.shard_id"
    ).to_arrow_table()


def cluster_rates(run: ReviewRun, limit: int = 30) -> pa.Table:
    """The ``limit`` clusters with the highest flag rate: (cluster, n_rows, n_flagged, flag_rate)."""
    if not has_view(run, "clusters"):
        return pa.table({"cluster": pa.array([], pa.int32())})
    return (
        run.db()
        .sql(
            "SELECT cluster, n_rows, n_flagged, flag_rate FROM clusters "
            "ORDER BY flag_rate DESC, n_flagged DESC, cluster LIMIT ?",
            params=[limit],
        )
        .to_arrow_table()
    )


def duplicate_counts(run: ReviewRun) -> pa.Table:
    """(kind, rows, groups) of duplicates.parquet."""
    if not has_view(run, "duplicates"):
        return pa.table({"kind": pa.array([], pa.string())})
    return (
        run.db()
        .sql(
            'SELECT kind, count(*) AS rows, count(DISTINCT "group") AS groups FROM duplicates '
            "GROUP BY kind ORDER BY kind"
        )
        .to_arrow_table()
    )


def decision_counts(run: ReviewRun) -> dict[str, int]:
    """Latest decision -> flagged rows, plus "undecided" among the rows a reviewer can see."""
    cur = run.db()
    cur.register("latest_rows", run.decision_log.refresh())
    rows = cur.execute(
        "SELECT coalesce(l.decision, 'undecided') AS d, count(*) FROM flags f LEFT JOIN latest_rows l "
        "USING (row_id) WHERE NOT f.never_render OR l.row_id IS NOT NULL GROUP BY d ORDER BY d"
    ).fetchall()
    return {d: int(n) for d, n in rows}


# --- quarantine -----------------------------------------------------------------------------------


def quarantine_counts(run: ReviewRun) -> pa.Table:
    """(reason, rows) of quarantine.parquet, most rows first."""
    if not has_view(run, "quarantine"):
        return pa.table({"reason": pa.array([], pa.string()), "rows": pa.array([], pa.int64())})
    return (
        run.db()
        .sql("SELECT reason, count(*) AS rows FROM quarantine GROUP BY reason ORDER BY rows DESC, reason")
        .to_arrow_table()
    )


def _quarantine_where(reasons: Sequence[str]) -> tuple[str, list]:
    return ("list_contains(?, reason)", [list(reasons)]) if reasons else ("true", [])


def quarantine_count(run: ReviewRun, reasons: Sequence[str] = ()) -> int:
    if not has_view(run, "quarantine"):
        return 0
    where, params = _quarantine_where(reasons)
    return int(run.db().execute(f"SELECT count(*) FROM quarantine WHERE {where}", params).fetchone()[0])  # type: ignore[index]


def quarantine_page(
    run: ReviewRun, reasons: Sequence[str] = (), offset: int = 0, limit: int = 50
) -> pa.Table:
    """Quarantined rows (row_id, shard_id, reason, detail, key, url, caption); a never-render one keeps
    only its row id and reason. No image of a quarantined row is ever shown."""
    if not has_view(run, "quarantine"):
        return pa.table({"row_id": pa.array([], pa.string())})
    where, params = _quarantine_where(reasons)
    hide = f"CASE WHEN {_QUARANTINE_NEVER_RENDER} THEN NULL ELSE"
    return (
        run.db()
        .sql(
            f"SELECT row_id, shard_id, reason, {hide} detail END AS detail, {hide} key END AS key, "
            f"{hide} url END AS url, {hide} caption END AS caption, "
            f"{_QUARANTINE_NEVER_RENDER} AS never_render "
            f"FROM quarantine WHERE {where} ORDER BY reason, shard_id, row_index LIMIT ? OFFSET ?",
            params=[*params, limit, offset],
        )
        .to_arrow_table()
    )
