"""Aggregations over a run's Parquet for the report, in DuckDB: it streams the files and keeps only
the aggregates, so memory does not grow with the corpus (``memory_limit`` caps it; DuckDB spills).

Every function returns plain lists and dicts (the figures of figures.json). Nothing here masks or
renders: audit.report_figures does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import duckdb
import pyarrow.parquet as pq

from audit.runfolder import RunFolder
from audit.schemas import SCORE_COLUMNS, SOURCE_SCORE_COLUMNS

# Scores on a 0..1 scale: histograms over fixed bins, so runs compare.
PROBABILITY_SCORES = (
    *(n for n in SCORE_COLUMNS if n.endswith("_prob") or n.startswith("detoxify_")),
    "source_punsafe",
    "source_pwatermark",
)
SIMILARITY_SCORES = ("clip_similarity", "source_similarity")
HISTOGRAM_BINS = 20
DUCKDB_MEMORY = "1GB"


@contextlib.contextmanager
def connect(folder: RunFolder) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = 2; SET memory_limit = '{DUCKDB_MEMORY}'")
        fs = folder.fs
        if fs.protocol not in ("file", ("file", "local")):
            con.register_filesystem(fs)  # fsspec: s3://, gs://, memory:// ...
        yield con
    finally:
        con.close()


def _q(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def parquet_list(paths: Sequence[str]) -> str:
    """A DuckDB read_parquet() over ``paths`` (full URLs), columns unified by name."""
    return f"read_parquet([{', '.join(_q(p) for p in paths)}], union_by_name = true)"


def columns_of(folder: RunFolder, path: str) -> set[str]:
    with folder.fs.open(path, "rb") as f:
        return set(pq.read_schema(f).names)


def url(folder: RunFolder, path: str) -> str:
    fs = folder.fs
    return path if fs.protocol in ("file", ("file", "local")) else fs.unstrip_protocol(path)


# --- flags ----------------------------------------------------------------------------------------


def flags_by_reason_severity(con: duckdb.DuckDBPyConnection, flags: str) -> list[dict]:
    rows = con.execute(
        f"SELECT reason, severity, count(*) FROM (SELECT unnest(reasons) AS reason, severity "
        f"FROM read_parquet({_q(flags)})) GROUP BY reason, severity ORDER BY reason, severity"
    ).fetchall()
    return [{"reason": r, "severity": s, "flags": n} for r, s, n in rows]


def flags_per_shard(con: duckdb.DuckDBPyConnection, flags: str) -> tuple[dict[str, int], list[tuple]]:
    """(shard -> flagged rows, [(shard, reason, flagged rows)])."""
    total = dict(
        con.execute(f"SELECT shard_id, count(*) FROM read_parquet({_q(flags)}) GROUP BY shard_id").fetchall()
    )
    by_reason = con.execute(
        f"SELECT shard_id, reason, count(*) FROM (SELECT shard_id, unnest(reasons) AS reason "
        f"FROM read_parquet({_q(flags)})) GROUP BY shard_id, reason"
    ).fetchall()
    return total, by_reason


# --- score distributions --------------------------------------------------------------------------


def score_histograms(con: duckdb.DuckDBPyConnection, scores: str, present: set[str]) -> list[dict]:
    """Per numeric score: rows with a value, min, max, mean and a histogram. Two scans of the scores."""
    names = [n for n in (*SCORE_COLUMNS, *SOURCE_SCORE_COLUMNS) if n in present and _numeric_float(n)]
    if not names:
        return []
    # NaN and inf (a dataset's own columns hold them) are counted apart, never binned or averaged
    finite = [f'FILTER (WHERE isfinite("{n}"::DOUBLE))' for n in names]
    aggs = ", ".join(
        f'count("{n}") {f}, min("{n}") {f}, max("{n}") {f}, avg("{n}") {f}, count("{n}")'
        for n, f in zip(names, finite, strict=True)
    )
    stats = con.execute(f"SELECT {aggs} FROM {scores}").fetchone()
    out, ranges = [], {}
    for i, n in enumerate(names):
        count, lo, hi, mean, present_rows = stats[5 * i : 5 * i + 5]
        doc = {"score": n, "rows": int(count), "non_finite": int(present_rows) - int(count),
               "min": lo, "max": hi, "mean": mean, "bins": []}  # fmt: skip
        out.append(doc)
        if not count:
            continue
        if n in PROBABILITY_SCORES:
            lo, hi = 0.0, 1.0
        elif hi <= lo:
            hi = lo + 1e-6
        ranges[n] = (float(lo), (float(hi) - float(lo)) / HISTOGRAM_BINS)
    if ranges:
        parts = [
            f'SELECT {_q(n)} AS score, least(greatest(floor(("{n}" - {lo!r}) / {w!r}), 0), '
            f'{HISTOGRAM_BINS - 1})::INTEGER AS bin FROM {scores} WHERE isfinite("{n}"::DOUBLE)'
            for n, (lo, w) in ranges.items()
        ]
        counts = con.execute(
            f"SELECT score, bin, count(*) FROM ({' UNION ALL '.join(parts)}) GROUP BY score, bin"
        ).fetchall()
        by_score: dict[str, dict[int, int]] = {}
        for score, b, c in counts:
            by_score.setdefault(score, {})[int(b)] = int(c)
        for doc in out:
            if doc["score"] in ranges:
                lo, w = ranges[doc["score"]]
                got = by_score.get(doc["score"], {})
                doc["bins"] = [
                    {"lo": lo + b * w, "hi": lo + (b + 1) * w, "rows": got.get(b, 0)}
                    for b in range(HISTOGRAM_BINS)
                ]
    return out


def _numeric_float(name: str) -> bool:
    col = SCORE_COLUMNS.get(name)
    if col is not None:
        return str(col.type) in ("float", "double")
    return name in ("source_similarity", "source_punsafe", "source_pwatermark")


# --- similarity threshold sweep -----------------------------------------------------------------


def similarity_sweep(
    con: duckdb.DuckDBPyConnection,
    flags: str,
    scores: str,
    column: str,
    thresholds: Sequence[float],
    *,
    only_precomputed: bool = False,
    excluded_reasons: Sequence[str] = (),
) -> dict:
    """For each threshold t: how many flagged pairs (with a value of ``column``) a filter keeping
    pairs with similarity >= t would keep, overall and per reason. Reasons in ``excluded_reasons``
    (those defined by the similarity itself) do not make a pair count."""
    ts = ", ".join(repr(float(t)) for t in thresholds)
    excluded = ", ".join(_q(r) for r in excluded_reasons) or "NULL"
    where = f's."{column}" IS NOT NULL'
    if only_precomputed:
        where += " AND s.image_status = 'precomputed'"
    base = (
        f'SELECT list_filter(f.reasons, lambda r: r NOT IN ({excluded})) AS reasons, s."{column}" AS sim '
        f"FROM read_parquet({_q(flags)}) f JOIN {scores} s ON f.row_id = s.row_id WHERE {where}"
    )
    pairs = f"(SELECT * FROM ({base}) WHERE len(reasons) > 0)"
    n = con.execute(f"SELECT count(*) FROM {pairs}").fetchone()[0]
    overall = con.execute(
        f"SELECT t, count(*) FILTER (WHERE sim >= t) FROM {pairs}, (SELECT unnest([{ts}]::DOUBLE[]) AS t) "
        "GROUP BY t ORDER BY t"
    ).fetchall()
    per_reason = con.execute(
        f"SELECT reason, t, count(*), count(*) FILTER (WHERE sim >= t) FROM "
        f"(SELECT unnest(reasons) AS reason, sim FROM {pairs}), (SELECT unnest([{ts}]::DOUBLE[]) AS t) "
        "GROUP BY reason, t ORDER BY reason, t"
    ).fetchall()
    by_reason: dict[str, dict] = {}
    for reason, t, total, kept in per_reason:
        doc = by_reason.setdefault(reason, {"reason": reason, "pairs": int(total), "points": []})
        doc["points"].append({"threshold": round(t, 4), "kept": int(kept), "share_kept": kept / total})
    return {
        "column": column,
        "pairs": int(n),
        "points": [
            {"threshold": round(t, 4), "kept": int(k), "share_kept": (k / n) if n else None}
            for t, k in overall
        ],
        "by_reason": list(by_reason.values()),
    }


# --- the dataset's own NSFW tag against caption harms --------------------------------------------


def nsfw_crosstab(
    con: duckdb.DuckDBPyConnection, scores: str, measures: dict[str, str], present: set[str]
) -> list[dict]:
    """Rows with a usable caption, by the dataset's NSFW tag and by punsafe bucket, with how many of
    them each caption measure (a SQL condition) hits."""
    counts = ", ".join(f"count(*) FILTER (WHERE {cond})" for cond in measures.values())
    groups = []
    if "source_nsfw" in present:
        groups.append(("NSFW tag", "coalesce(source_nsfw, '(none)')"))
    if "source_punsafe" in present:
        groups.append(
            (
                "punsafe",
                "CASE WHEN source_punsafe IS NULL THEN '(none)' WHEN source_punsafe < 0.1 THEN '<0.1' "
                "WHEN source_punsafe < 0.5 THEN '0.1-0.5' WHEN source_punsafe < 0.8 THEN '0.5-0.8' "
                "ELSE '>=0.8' END",
            )
        )
    out = []
    for label, expr in groups:
        rows = con.execute(
            f"SELECT {expr} AS value, count(*), {counts} FROM {scores} WHERE caption_problem IS NULL "
            "GROUP BY value ORDER BY value"
        ).fetchall()
        for value, n, *hits in rows:
            doc = {"source": label, "value": value, "rows": int(n)}
            for name, k in zip(measures, hits, strict=True):
                doc[name] = int(k)
                doc[f"{name}_rate"] = k / n if n else None
            out.append(doc)
    return out


def non_null_counts(con: duckdb.DuckDBPyConnection, scores: str, columns: Sequence[str]) -> dict[str, int]:
    if not columns:
        return {}
    got = con.execute(f"SELECT {', '.join(f'count({c})' for c in columns)} FROM {scores}").fetchone()
    return dict(zip(columns, (int(v) for v in got), strict=True))


# --- lexicon terms ---------------------------------------------------------------------------------


def lexicon_terms(con: duckdb.DuckDBPyConnection, scores: str, limit: int = 30) -> list[tuple[str, int]]:
    return con.execute(
        f"SELECT term, count(*) AS n FROM (SELECT unnest(lexicon_terms) AS term FROM {scores}) "
        f"GROUP BY term ORDER BY n DESC, term LIMIT {int(limit)}"
    ).fetchall()


# --- clusters and duplicates --------------------------------------------------------------------


def cluster_reasons(con: duckdb.DuckDBPyConnection, flags: str, neighbours: str) -> dict[int, dict[str, int]]:
    rows = con.execute(
        f"SELECT n.cluster, r.reason, count(*) FROM (SELECT row_id, unnest(reasons) AS reason FROM "
        f"read_parquet({_q(flags)})) r JOIN {neighbours} n ON n.row_id = r.row_id "
        "WHERE n.cluster IS NOT NULL GROUP BY n.cluster, r.reason"
    ).fetchall()
    out: dict[int, dict[str, int]] = {}
    for cluster, reason, n in rows:
        out.setdefault(int(cluster), {})[reason] = int(n)
    return out


def duplicate_stats(con: duckdb.DuckDBPyConnection, duplicates: str, flags: str, removed: str) -> dict:
    """Per kind: groups, member rows, rows beyond one per group, the largest group, flagged members,
    and members left in the set although another member of their group is on the removal list."""
    dup = f"read_parquet({_q(duplicates)})"
    kinds = con.execute(
        f"""
        WITH g AS (SELECT kind, "group", count(*) AS size FROM {dup} GROUP BY kind, "group")
        SELECT kind, count(*), sum(size), sum(size) - count(*), max(size) FROM g GROUP BY kind ORDER BY kind
        """
    ).fetchall()
    flagged = dict(
        con.execute(
            f"SELECT d.kind, count(*) FROM {dup} d SEMI JOIN read_parquet({_q(flags)}) f "
            "ON d.row_id = f.row_id GROUP BY d.kind"
        ).fetchall()
    )
    left = dict(
        con.execute(
            f"""
            WITH hit AS (SELECT DISTINCT d.kind, d."group" FROM {dup} d SEMI JOIN {removed} r
                         ON d.row_id = r.row_id)
            SELECT d.kind, count(*) FROM {dup} d SEMI JOIN hit h ON d.kind = h.kind AND d."group" = h."group"
            ANTI JOIN {removed} r ON d.row_id = r.row_id GROUP BY d.kind
            """
        ).fetchall()
    )
    sizes = con.execute(
        f"""
        SELECT kind, CASE WHEN size < 5 THEN size::VARCHAR WHEN size < 10 THEN '5-9'
                          WHEN size < 100 THEN '10-99' ELSE '100+' END AS bucket, count(*)
        FROM (SELECT kind, "group", count(*) AS size FROM {dup} GROUP BY kind, "group")
        GROUP BY kind, bucket ORDER BY kind, min(size)
        """
    ).fetchall()
    return {
        "by_kind": [
            {
                "kind": k,
                "groups": int(g),
                "rows": int(r),
                "redundant_rows": int(x),
                "largest_group": int(m),
                "flagged_rows": int(flagged.get(k, 0)),
                "copies_of_removed_rows_left": int(left.get(k, 0)),
            }
            for k, g, r, x, m in kinds
        ],
        "group_sizes": [{"kind": k, "size": b, "groups": int(n)} for k, b, n in sizes],
    }


def exists(folder: RunFolder, path: str) -> bool:
    try:
        return folder.fs.exists(path)
    except (OSError, ValueError):
        return False
