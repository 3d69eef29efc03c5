"""Everything the review dashboard reads and writes: the run, filtered flags, thumbnails, decisions.

The dashboard holds widgets only; this module is the tested surface. Reviewer decisions are
append-only rows in RUN/decisions.db (SQLite) keyed by the corpus-unique row id (never by the
dataset's key, which may repeat across shards): a change of mind is a new row, the latest row per
row id wins, and the full history stays for the audit trail.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from PIL import ImageFilter
from pydantic import ValidationError

from audit.errors import AuditError, InputFileError
from audit.images import DecodeFailure, decode_image
from audit.render_policy import may_render, never_render
from audit.runfolder import RunFolder
from audit.schemas import SEVERITIES, Manifest, Summary
from audit.shards import ShardSpec

Decision = Literal["confirm_harmful", "false_positive", "needs_escalation"]
DECISIONS: tuple[str, ...] = get_args(Decision)
UNDECIDED = "undecided"  # filter value for rows nobody has decided on yet

THUMB_MAX_SIDE = 256
# Strong enough that a 256 px thumbnail shows layout and colour but no recognisable detail.
BLUR_RADIUS = 12
IMAGELESS_FORMATS = ("laion_metadata", "clip_retrieval")  # URLs or embeddings only

_DDL = f"""
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    row_id TEXT NOT NULL,
    key TEXT NOT NULL,  -- the dataset's label, kept for people reading the database
    decision TEXT NOT NULL CHECK (decision IN ({", ".join(repr(d) for d in DECISIONS)})),
    reviewer TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    decided_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_by_row ON decisions (row_id, id);
-- append-only in the database itself, not only by convention in this module
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
"""


class ImageUnavailableError(AuditError):
    """A flagged row's image cannot (or must not) be shown; ``str(err)`` says why in one line."""


@dataclass(frozen=True)
class ReviewRun:
    folder: RunFolder
    summary: Summary
    manifest: Manifest
    flags: pa.Table  # FLAGS_SCHEMA as the run wrote it, most severe first

    @property
    def name(self) -> str:
        return self.summary.run_name


@dataclass(frozen=True)
class DecisionRow:
    id: int
    row_id: str
    key: str
    decision: Decision
    reviewer: str
    note: str
    decided_at: str  # UTC, ISO 8601


# --- run ----------------------------------------------------------------------------------------


def load_run(run_url: str | RunFolder) -> ReviewRun:
    """Summary, manifest and flags of a finished run; one-line InputFileError if any is missing."""
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
            f"{folder.url}: unreadable summary.json or manifest.json ({_first_line(e)})"
        ) from None
    flags = folder.read_parquet(folder.flags)
    if "row_id" not in flags.column_names:
        raise InputFileError(
            f"{folder.flags}: written by an older mmaudit that identified rows by key; "
            f"audit again into a new run folder to review it"
        )
    return ReviewRun(folder, summary, manifest, flags)


def severity_rank(severity: str) -> int:
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r} (known: {', '.join(SEVERITIES)})")
    return SEVERITIES.index(severity)


def filter_flags(
    flags: pa.Table,
    reasons: Iterable[str] | None = None,
    min_severity: str | None = None,
    decision: str | None = None,
    *,
    decisions: Mapping[str, DecisionRow] | None = None,
) -> pa.Table:
    """Rows with any of ``reasons``, at least ``min_severity``, whose latest decision is ``decision``.

    Each filter is skipped when None; an empty ``reasons`` also means "any reason", as an empty
    multiselect does. ``decision`` is one of DECISIONS or UNDECIDED and needs ``decisions``
    (from load_decisions).
    """
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


def format_scores(scores: Iterable[tuple[str, float]]) -> str:
    return ", ".join(f"{name}={value:.3g}" for name, value in scores)  # 0.972, and counts as 3


def flag_row(run: ReviewRun, row_id: str) -> dict:
    """The flag row of ``row_id``; KeyError if that row is not flagged."""
    idx = pc.index(run.flags.column("row_id"), row_id).as_py()
    if idx < 0:
        raise KeyError(f"{row_id!r} is not a flagged row of run {run.name}")
    return run.flags.slice(idx, 1).to_pylist()[0]


# --- images -------------------------------------------------------------------------------------


def render_blocked(row: Mapping) -> bool:
    """Its image is never shown, thumbnailed or copied, blurred or not, and the row is only counted
    and listed by row id (audit.render_policy.never_render)."""
    return never_render(row)


def shard_spec(run: ReviewRun, shard_id: str) -> ShardSpec:
    """The input shard a run read, rebuilt from its manifest record."""
    record = next((s for s in run.manifest.shards if s.shard_id == shard_id), None)
    if record is None:
        raise InputFileError(f"{run.folder.manifest}: no shard {shard_id!r}")
    sidecar = None
    if record.format == "webdataset" and record.path.endswith(".tar"):
        candidate = record.path[: -len(".tar")] + ".parquet"
        fs, path = fsspec.core.url_to_fs(candidate)
        sidecar = candidate if fs.exists(path) else None  # as discover_shards pairs them
    return ShardSpec(record.shard_id, record.path, record.format, sidecar)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=2)
def _shard_images(spec: ShardSpec) -> tuple[pa.Table, str]:
    """(row_id, key, image) of one shard in row order, plus the shard's sha256; cached as the
    dashboard reruns often."""
    from audit.readers import read_shard  # heavy import, only when an image is asked for

    data = read_shard(spec)
    return data.table.select(["row_id", "key", "image"]), data.sha256


def load_image(run: ReviewRun, row_id: str, blur: bool = True) -> bytes:
    """JPEG thumbnail (longest side THUMB_MAX_SIDE) of a flagged row, Gaussian-blurred unless blur=False.

    The image is the one at the row's own position in its shard (never looked up by key). Raises
    ImageUnavailableError when the row has no image bytes, the shard changed since the audit, the
    bytes do not decode, or the row may not be rendered (audit.render_policy).
    """
    row = flag_row(run, row_id)
    spec = shard_spec(run, row["shard_id"])
    if spec.format in IMAGELESS_FORMATS:  # said first: no pixels are read, and it is the true reason
        raise ImageUnavailableError(
            f"{row_id}: shard {spec.shard_id} is {spec.format}, which carries no images"
        )
    if not may_render(row):
        raise ImageUnavailableError(
            f"{row_id}: never rendered (a known-bad match, a never-render rule, or no hash-list outcome)"
        )
    record = next(s for s in run.manifest.shards if s.shard_id == spec.shard_id)
    images, sha = _shard_images(spec)
    if record.sha256 and sha != record.sha256:
        # the row's position may now hold a different image than the one that was scored
        raise ImageUnavailableError(f"{spec.path}: the shard changed since the audit (sha256 differs)")
    at = int(row["row_index"])
    if at >= images.num_rows or images.column("row_id")[at].as_py() != row_id:
        raise ImageUnavailableError(f"{row_id}: not found at its position in shard {spec.shard_id}")
    data = images.column("image")[at].as_py()
    if not data:
        raise ImageUnavailableError(f"{row_id}: shard {spec.shard_id} holds no image bytes for this row")
    max_pixels = int(run.manifest.config.get("images", {}).get("max_pixels", 89_478_485))
    im = decode_image(data, max_pixels)
    if isinstance(im, DecodeFailure):
        raise ImageUnavailableError(f"{row_id}: image cannot be decoded ({im.reason}: {im.detail})")
    im.thumbnail((THUMB_MAX_SIDE, THUMB_MAX_SIDE))
    if blur:
        im = im.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=85)
    return out.getvalue()


# --- decisions ----------------------------------------------------------------------------------


def _db_path(run: ReviewRun) -> Path:
    if run.folder.fs.protocol not in ("file", ("file", "local")):
        raise InputFileError(f"{run.folder.url}: decisions.db needs a local run folder (SQLite)")
    return Path(run.folder.decisions)


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    # timeout: several reviewers on one dashboard may write at the same moment
    conn = sqlite3.connect(path, timeout=30)
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
        if columns and "row_id" not in columns:  # before the DDL: its index needs row_id
            raise InputFileError(f"{path}: decisions keyed by dataset key (an older mmaudit); move it aside")
        conn.executescript(_DDL)
        with conn:  # one transaction, committed on success
            yield conn
    finally:
        conn.close()


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def record_decision(run: ReviewRun, row_id: str, decision: str, reviewer: str, note: str = "") -> DecisionRow:
    """Append one decision row; ValueError for an unknown decision, empty reviewer or unflagged row."""
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r} (known: {', '.join(DECISIONS)})")
    reviewer = reviewer.strip()
    if not reviewer:
        raise ValueError("a decision needs a reviewer name")
    try:
        key = flag_row(run, row_id)["key"]
    except KeyError as e:
        raise ValueError(str(e.args[0])) from None
    decided_at = _utc_now()
    with _connect(_db_path(run)) as conn:
        cur = conn.execute(
            "INSERT INTO decisions (row_id, key, decision, reviewer, note, decided_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (row_id, key, decision, reviewer, note, decided_at),
        )
        decision_id = int(cur.lastrowid or 0)
    return DecisionRow(decision_id, row_id, key, decision, reviewer, note, decided_at)  # type: ignore[arg-type]


def decision_history(run: ReviewRun, row_id: str | None = None) -> list[DecisionRow]:
    """Every decision row, oldest first (only ``row_id``'s when given)."""
    path = _db_path(run)
    if not path.exists():
        return []  # reading never creates the database
    query = "SELECT id, row_id, key, decision, reviewer, note, decided_at FROM decisions"
    params: tuple[str, ...] = ()
    if row_id is not None:
        query, params = query + " WHERE row_id = ?", (row_id,)
    with _connect(path) as conn:
        rows = conn.execute(query + " ORDER BY id", params).fetchall()
    return [DecisionRow(*r) for r in rows]


def load_decisions(run: ReviewRun) -> dict[str, DecisionRow]:
    """The latest decision per row id (by insertion order, not clock: reviewers' clocks differ)."""
    return {row.row_id: row for row in decision_history(run)}


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__
