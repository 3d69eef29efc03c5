"""The run under review: its summary, manifest and one DuckDB connection over its Parquet files.

Flags are never loaded whole for the dashboard: queues, counts and single rows are DuckDB queries over
RUN/flags.parquet (a million flags take tens of milliseconds to filter and page). ``ReviewRun.flags``
still gives the whole table, read on first use, for callers over small runs (tests, the CLI).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from audit.errors import InputFileError
from audit.render_policy import NEVER_RENDER_SQL
from audit.row_identity import split_row_id
from audit.runfolder import RunFolder
from audit.schemas import SEVERITIES, Manifest, Summary

if TYPE_CHECKING:
    from audit.review.decisions import DecisionLog, DecisionRow

# DuckDB's share of the dashboard process (the report's limit, halved: a server also holds pages)
DUCKDB_MEMORY = "512MB"
DUCKDB_THREADS = 2


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class ReviewRun:
    """A finished run folder opened for review. Build with ``load_run``.

    ``flags`` may be given (a caller that already holds them, or an empty table for callers that only
    need decisions); otherwise it is read from flags.parquet on first use.
    """

    def __init__(
        self, folder: RunFolder, summary: Summary, manifest: Manifest, flags: pa.Table | None = None
    ):
        self.folder = folder
        self.summary = summary
        self.manifest = manifest
        self._flags = flags
        self._lock = threading.Lock()
        self._db: duckdb.DuckDBPyConnection | None = None
        self._views: frozenset[str] = frozenset()
        self._decision_log: DecisionLog | None = None

    @property
    def name(self) -> str:
        return self.summary.run_name

    @property
    def url(self) -> str:
        return self.folder.url

    def __repr__(self) -> str:
        return f"ReviewRun({self.folder.url!r})"

    @property
    def flags(self) -> pa.Table:
        """Every flag (FLAGS_SCHEMA, most severe first), read once. Over large runs use ``queue``."""
        if self._flags is None:
            self._flags = self.folder.read_parquet(self.folder.flags)
        return self._flags

    # --- DuckDB -------------------------------------------------------------------------------

    def db(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the run's DuckDB views (one per call: cursors may be used from any thread)."""
        with self._lock:
            if self._db is None:
                self._db, self._views = _open_db(self)
            return self._db.cursor()

    def has(self, *parts: str) -> bool:
        return self.folder.exists(self.folder.path(*parts))

    @property
    def decision_log(self) -> DecisionLog:
        """The run's decisions, latest per row, kept in memory and refreshed incrementally."""
        from audit.review.decisions import DecisionLog

        with self._lock:
            if self._decision_log is None:
                self._decision_log = DecisionLog(self)
            return self._decision_log


def glob_escaped(path: str) -> str:
    """``path`` with DuckDB's glob characters matched literally (``[*]``), so a run folder or shard id
    holding ``*`` or ``[`` names that one file, never a pattern over others."""
    return "".join(f"[{c}]" if c in "*?[]{}" else c for c in path)


def _parquet_source(run: ReviewRun, paths: list[str], extra: str = "") -> str:
    listed = ", ".join(sql_literal(glob_escaped(_url(run, p))) for p in paths)
    return f"read_parquet([{listed}]{extra})"


def _url(run: ReviewRun, path: str) -> str:
    fs = run.folder.fs
    return path if fs.protocol in ("file", ("file", "local")) else fs.unstrip_protocol(path)


# optional tables and the columns a view needs (older run folders may lack them or name rows by key)
_OPTIONAL = {
    "quarantine": ("row_id", "reason"),
    "clusters": ("cluster", "flag_rate"),
    "duplicates": ("row_id", "kind", "group", "representative_row_id"),
    "near_flagged": ("row_id", "seed_row_id"),
}


def _columns(run: ReviewRun, path: str) -> set[str]:
    import pyarrow.parquet as pq

    with run.folder.fs.open(path, "rb") as f:
        return set(pq.read_schema(f).names)


def _open_db(run: ReviewRun) -> tuple[duckdb.DuckDBPyConnection, frozenset[str]]:
    """The connection and the names of the views it has (flags always; the others when present)."""
    con = duckdb.connect()
    con.execute(f"SET threads = {DUCKDB_THREADS}; SET memory_limit = '{DUCKDB_MEMORY}'")
    fs = run.folder.fs
    if fs.protocol not in ("file", ("file", "local")):
        con.register_filesystem(fs)
    folder = run.folder
    # pos: the row's place in flags.parquet (severity, shard, row): the stable tie-breaker of sorts
    con.execute(
        "CREATE VIEW flags AS SELECT * EXCLUDE (file_row_number), file_row_number AS pos, "
        f"{NEVER_RENDER_SQL} AS never_render "
        f"FROM {_parquet_source(run, [folder.flags], ', file_row_number = true')}"
    )
    # the few never-render rows, found once: every queue leaves them out by an anti-join on this small
    # table instead of evaluating the predicate (a list column among them) on every row of every scan
    con.execute(
        "CREATE TABLE never_rendered AS SELECT pos, row_id FROM flags WHERE never_render ORDER BY pos"
    )
    views = {"flags"}
    for name, needed in _OPTIONAL.items():
        path = folder.path(f"{name}.parquet")
        if folder.exists(path) and set(needed) <= _columns(run, path):
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {_parquet_source(run, [path])}")
            views.add(name)
    nb_dir = folder.path("neighbours")
    listed = fs.ls(nb_dir, detail=False) if fs.isdir(nb_dir) else []
    neighbours = sorted(p for p in listed if p.endswith(".parquet"))  # ls, not glob: names are data
    if neighbours and {"row_id", "cluster"} <= _columns(run, neighbours[0]):
        con.execute(
            "CREATE VIEW neighbours AS SELECT row_id, cluster, cluster_similarity, outlier_score "
            f"FROM {_parquet_source(run, neighbours, ', union_by_name = true')}"
        )
        views.add("neighbours")
    return con, frozenset(views)


def has_view(run: ReviewRun, name: str) -> bool:
    """Whether the run has that table in a form the dashboard reads (see _OPTIONAL)."""
    run.db()  # opens the database on first use
    return name in run._views


# --- opening a run --------------------------------------------------------------------------------


def load_run(run_url: str | RunFolder) -> ReviewRun:
    """Summary and manifest of a finished run; one-line InputFileError if a file is missing or from
    an mmaudit that identified rows by key. Flags stay on disk until asked for."""
    folder = run_url if isinstance(run_url, RunFolder) else RunFolder(str(run_url))
    if not folder.exists(folder.summary):
        hint = f"run `mmaudit audit --out {folder.url}` first"
        raise InputFileError(f"{folder.url}: not a finished run folder (no summary.json; {hint})")
    for path in (folder.manifest, folder.flags):
        if not folder.exists(path):
            raise InputFileError(f"{path}: missing from the run folder")
    try:
        summary = Summary.model_validate(folder.read_json(folder.summary))
        manifest = Manifest.model_validate(folder.read_json(folder.manifest))
    except (ValidationError, ValueError) as e:
        raise InputFileError(
            f"{folder.url}: unreadable summary.json or manifest.json ({first_line(e)})"
        ) from None
    import pyarrow.parquet as pq

    with folder.fs.open(folder.flags, "rb") as f:
        names = pq.read_schema(f).names
    if "row_id" not in names:
        raise InputFileError(
            f"{folder.flags}: written by an older mmaudit that identified rows by key; "
            f"audit again into a new run folder to review it"
        )
    return ReviewRun(folder, summary, manifest)


def latest_run(root: str | Path = "runs") -> str:
    """The most recently finished run folder under ``root`` (by summary.json's modification time);
    InputFileError when there is none."""
    root = Path(root)
    summaries = [p for p in root.glob("*/summary.json") if p.is_file()] if root.is_dir() else []
    if not summaries:
        raise InputFileError(f"{root}: no finished run folder in it (run `make audit` first, or pass --run)")
    return str(max(summaries, key=lambda p: p.stat().st_mtime_ns).parent)


def first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


# --- single rows ----------------------------------------------------------------------------------


def flag_row(run: ReviewRun, row_id: str) -> dict:
    """The flag row of ``row_id``; KeyError if that row is not flagged."""
    if run._flags is not None:
        idx = pc.index(run._flags.column("row_id"), row_id).as_py()
        found = run._flags.slice(idx, 1).to_pylist() if idx >= 0 else []
    else:
        sql, params = "SELECT * EXCLUDE (pos, never_render) FROM flags WHERE row_id = ?", [row_id]
        with contextlib.suppress(ValueError):  # a row id names its shard and row: flags.parquet is
            shard_id, index = split_row_id(row_id)  # sorted by shard within a severity, so the row
            sql += " AND shard_id = ? AND row_index = ?"  # groups' statistics skip most of the file
            params += [shard_id, index]
        found = run.db().sql(sql + " LIMIT 1", params=params).to_arrow_table().to_pylist()
        for row in found:  # DuckDB hands maps back as {key: [...], value: [...]}; Arrow as pairs
            for name in ("scores", "thresholds"):
                row[name] = _pairs(row[name])
    if not found:
        raise KeyError(f"{row_id!r} is not a flagged row of run {run.name}")
    return found[0]


def _pairs(value: object) -> list[tuple[str, float]]:
    if isinstance(value, dict):
        if "key" in value:
            return list(zip(value["key"], value["value"], strict=True))
        return list(value.items())
    return list(value or [])  # type: ignore[arg-type]


def severity_rank(severity: str) -> int:
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r} (known: {', '.join(SEVERITIES)})")
    return SEVERITIES.index(severity)


def format_scores(scores: Iterable[tuple[str, float]]) -> str:
    return ", ".join(f"{name}={value:.3g}" for name, value in scores)  # 0.972, and counts as 3


# --- whole-table helpers (small runs, and callers that already hold a flags table) ----------------


def filter_flags(
    flags: pa.Table,
    reasons: Iterable[str] | None = None,
    min_severity: str | None = None,
    decision: str | None = None,
    *,
    decisions: Mapping[str, DecisionRow] | None = None,
) -> pa.Table:
    """Rows with any of ``reasons``, at least ``min_severity``, whose latest decision is ``decision``.

    Each filter is skipped when None; an empty ``reasons`` also means "any reason". ``decision`` is
    one of DECISIONS or UNDECIDED and needs ``decisions`` (from load_decisions). The dashboard's
    queue is audit.review.queue, which does this in DuckDB without the table in memory.
    """
    from audit.review.decisions import DECISIONS, UNDECIDED

    mask = np.ones(flags.num_rows, dtype=bool)
    wanted = list(reasons or [])
    if wanted:
        col = flags.column("reasons")
        hit = pc.is_in(pc.list_flatten(col), value_set=pa.array(wanted, pa.string()))
        parents = pc.list_parent_indices(col).to_numpy(zero_copy_only=False)
        any_hit = np.zeros(flags.num_rows, dtype=bool)
        any_hit[parents[hit.to_numpy(zero_copy_only=False)]] = True
        mask &= any_hit
    if min_severity is not None:
        ranks = flags.column("severity_rank").to_numpy(zero_copy_only=False)
        mask &= ranks >= severity_rank(min_severity)
    if decision is not None:
        if decision not in (*DECISIONS, UNDECIDED):
            raise ValueError(f"unknown decision {decision!r} (known: {', '.join((*DECISIONS, UNDECIDED))})")
        if decisions is None:
            raise ValueError("filtering by decision needs decisions= (from load_decisions)")
        latest = [
            decisions[r].decision if r in decisions else UNDECIDED for r in flags.column("row_id").to_pylist()
        ]
        mask &= np.asarray(latest, dtype=object) == decision
    return flags.filter(pa.array(mask))


def flags_frame(flags: pa.Table, decisions: Mapping[str, DecisionRow] | None = None) -> pd.DataFrame:
    """Flags as a flat table for display: lists joined, score maps as 'name=value' text."""
    decisions = decisions or {}
    rows = [
        {
            "row_id": r["row_id"],
            "key": r["key"],
            "severity": r["severity"],
            "reasons": ", ".join(r["reasons"]),
            "decision": decisions[r["row_id"]].decision if r["row_id"] in decisions else "",
            "caption": r["caption"],
            "url": r["url"],
            "scores": format_scores(r["scores"]),
            "shard_id": r["shard_id"],
            "row_index": r["row_index"],
        }
        for r in flags.to_pylist()
    ]
    columns = ["row_id", "key", "severity", "reasons", "decision", "caption", "url", "scores",
               "shard_id", "row_index"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)
