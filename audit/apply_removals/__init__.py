"""``mmaudit apply-removals RUN --to DEST``: a cleaned copy of the run's shard set, without the rows
of its removal list (RUN/report/removal_list.parquet; docs/removal-lists.md).

Rows are removed by row id (``<shard_id>:<row_index>``, the shard as the run's manifest records it),
never by key, and each removed row must still hold the key the list names. Shards with no removed
row are copied byte for byte; the others are rewritten in their own format (one module each:
parquet_rows, webdataset, clip_retrieval, datacomp), streaming (row batches, tar members, .npy row
slices), with embedding files kept aligned with their metadata row for row. Every input file is
checked against the audit (its sha256 and row count) before its output is renamed into place.

Resumable: each shard's files are written under temporary names and renamed when all are complete
and checked, then DEST/_removals/done/<shard>.json marks it done; a rerun skips done shards and
redoes the rest. DEST/_removals/manifest.json and removed.parquet say what was removed and why.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from audit.apply_removals.clip_retrieval import clean_clip_retrieval_shard
from audit.apply_removals.datacomp import clean_datacomp_shard
from audit.apply_removals.outputs import Staging, copy_stream, stale_temp_files
from audit.apply_removals.parquet_rows import clean_parquet_shard
from audit.apply_removals.plan import STATE_FOLDER, ShardJob, plan, read_removal_list
from audit.apply_removals.webdataset import clean_webdataset_shard
from audit.errors import InputFileError, OutputPathError
from audit.runfolder import RunFolder, check_output_folder
from audit.schemas import Manifest

CLEANERS: dict[str, Callable] = {
    "laion_metadata": clean_parquet_shard,
    "img2dataset_parquet": clean_parquet_shard,
    "webdataset": clean_webdataset_shard,
    "clip_retrieval": clean_clip_retrieval_shard,
    "datacomp": clean_datacomp_shard,
}
MANIFEST_VERSION = "1"


@dataclass
class ShardOutcome:
    shard_id: str
    format: str
    action: str  # rewritten | copied | copied-unaudited | resumed
    rows_in: int
    rows_removed: int
    outputs: dict[str, dict]  # role -> {"path", "sha256", "bytes"}
    sources: dict[str, str]

    def doc(self) -> dict:
        return {**self.__dict__, "rows_out": self.rows_in - self.rows_removed}


@dataclass
class CleanResult:
    dest: str
    shards: list[ShardOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_removed(self) -> int:
        return sum(s.rows_removed for s in self.shards)

    def count(self, action: str) -> int:
        return sum(s.action == action for s in self.shards)


@contextlib.contextmanager
def open_source(url: str) -> Iterator[BinaryIO]:
    try:
        f = fsspec.open(url, "rb").open()
    except FileNotFoundError:
        raise InputFileError(f"{url}: no such file (the shard set changed since the audit?)") from None
    with f:
        yield f


def _list_digest(removals: pa.Table) -> str:
    return hashlib.sha256("\n".join(sorted(removals.column("row_id").to_pylist())).encode()).hexdigest()[:16]


def _write_json(fs: fsspec.AbstractFileSystem, path: str, doc: dict) -> None:
    staging = Staging(fs)
    with staging.file(path).open() as f:
        f.write(json.dumps(doc, indent=2, default=str).encode())
    staging.commit()


def _read_json(fs: fsspec.AbstractFileSystem, path: str) -> dict | None:
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return json.loads(f.read())


def _prepare_dest(fs: fsspec.AbstractFileSystem, root: str, dest: str, state: dict) -> None:
    """DEST is empty, or a cleaned set of this same run and list in progress (resume)."""
    plan_path = posixpath.join(root, STATE_FOLDER, "plan.json")
    previous = _read_json(fs, plan_path)
    if previous is not None:
        if {k: previous.get(k) for k in state} != state:
            raise OutputPathError(
                f"--to {dest}: holds a cleaned set made from another run or removal list "
                f"({previous.get('run_name')}, list {previous.get('list_digest')}); choose an empty folder"
            )
    elif fs.exists(root) and fs.ls(root, detail=False):
        raise OutputPathError(f"--to {dest}: the folder is not empty (give an empty or new folder)")
    for path in stale_temp_files(fs, root):
        fs.rm(path)
    _write_json(fs, plan_path, state)


def _done(fs: fsspec.AbstractFileSystem, marker: str, job: ShardJob) -> ShardOutcome | None:
    doc = _read_json(fs, marker)
    if doc is None or doc.get("digest") != job.digest:
        return None
    for out in doc["outputs"].values():
        if not fs.exists(out["path"]) or fs.size(out["path"]) != out["bytes"]:
            return None
    rec = job.record
    return ShardOutcome(
        rec.shard_id, rec.format, "resumed", doc["rows_in"], doc["rows_removed"], doc["outputs"], job.sources
    )


def _clean(job: ShardJob, fs: fsspec.AbstractFileSystem) -> ShardOutcome:
    rec = job.record
    staging = Staging(fs)
    try:
        if rec.status != "done" or not len(job.drop):
            sha = ""
            for role, url in job.sources.items():
                with open_source(url) as src, staging.file(job.targets[role]).open() as dst:
                    digest = copy_stream(src, dst)
                sha = digest if role == "main" else sha
            action, rows_in, removed = ("copied", rec.rows_in, 0) if rec.status == "done" else (
                "copied-unaudited", rec.rows_in, 0)  # fmt: skip
        else:
            got = CLEANERS[rec.format](job, staging, open_source)
            sha, rows_in, removed, action = got.sha256, got.rows_in, got.rows_in - got.rows_out, "rewritten"
            if rows_in != rec.rows_in:
                raise InputFileError(
                    f"{rec.path}: {rows_in} rows now, {rec.rows_in} when audited: the shard changed; "
                    "audit it again"
                )
            if removed != len(job.drop):
                raise InputFileError(f"{rec.path}: removed {removed} rows of the {len(job.drop)} listed")
        if rec.status == "done" and rec.sha256 and sha != rec.sha256:
            raise InputFileError(f"{rec.path}: its sha256 differs from the audited shard's: audit it again")
        staging.commit()
    except BaseException:
        staging.discard()
        raise
    role_of = {path: role for role, path in job.targets.items()}
    outputs = {role_of[f.path]: {"path": f.path, "sha256": f.sha256, "bytes": f.bytes} for f in staging.files}
    return ShardOutcome(rec.shard_id, rec.format, action, rows_in, removed, outputs, job.sources)


def apply_removals(
    run_url: str,
    dest: str,
    *,
    removal_list: str | None = None,
    progress: Callable[[ShardOutcome], None] | None = None,
) -> CleanResult:
    """Write the cleaned shard set of ``run_url`` into ``dest``; see the module docstring."""
    folder = RunFolder(str(run_url))
    if not folder.exists(folder.manifest):
        raise InputFileError(f"{folder.url}: not a run folder (no manifest.json)")
    manifest = Manifest.model_validate(folder.read_json(folder.manifest))
    list_path = removal_list or folder.url_of("report", "removal_list.parquet")
    removals = read_removal_list(list_path, manifest, check_run=removal_list is None)
    check_output_folder(dest, "--to")
    jobs, base = plan(manifest, removals, dest, list_path)
    fs, root = fsspec.core.url_to_fs(dest)
    state = {
        "run_name": manifest.run_name,
        "config_hash": manifest.config_hash,
        "list_digest": _list_digest(removals),
    }
    _prepare_dest(fs, root, dest, state)
    result = CleanResult(dest)
    for job in jobs:
        marker = posixpath.join(root, STATE_FOLDER, "done", f"{job.record.shard_id}.json")
        outcome = _done(fs, marker, job)
        if outcome is None:
            outcome = _clean(job, fs)
            _write_json(fs, marker, {"digest": job.digest, **outcome.doc()})
        if outcome.action == "copied-unaudited":
            result.warnings.append(f"shard {job.record.shard_id} failed in the audit: copied unchanged")
        result.shards.append(outcome)
        if progress:
            progress(outcome)
    _write_manifest(fs, root, result, manifest, state, list_path, removals, jobs, base)
    return result


def _write_manifest(fs, root, result, manifest, state, list_path, removals, jobs, base) -> None:
    """DEST/_removals/removed.parquet (the list's rows, with the file each left) and manifest.json."""
    target = {j.record.shard_id: j.targets["main"] for j in jobs}
    shard_of = [r.rpartition(":")[0] for r in removals.column("row_id").to_pylist()]
    table = removals.append_column("removed_from", pa.array([target[s] for s in shard_of], pa.string()))
    staging = Staging(fs)
    with staging.file(posixpath.join(root, STATE_FOLDER, "removed.parquet")).open() as f:
        pq.write_table(table, f, compression="zstd")
    staging.commit()
    doc = {
        "schema": "mmaudit.cleaned_set",
        "version": MANIFEST_VERSION,
        **state,
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source_run": manifest.run_name,
        "source_root": base,
        "removal_list": list_path,
        "removal_policy": (removals.schema.metadata or {}).get(b"mmaudit.removal_policy", b"").decode()
        or None,
        "rows_removed": result.rows_removed,
        "removed_by_basis": _counts(removals, "basis"),
        "removed_by_reason": _reason_counts(removals),
        "shards": [s.doc() for s in result.shards],
        "warnings": result.warnings,
    }
    _write_json(fs, posixpath.join(root, STATE_FOLDER, "manifest.json"), doc)


def _counts(table: pa.Table, column: str) -> dict[str, int]:
    if column not in table.column_names:
        return {}
    out: dict[str, int] = {}
    for v in table.column(column).to_pylist():
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def _reason_counts(table: pa.Table) -> dict[str, int]:
    if "reasons" not in table.column_names:
        return {}
    out: dict[str, int] = {}
    for reasons in table.column("reasons").to_pylist():
        for r in reasons or ():
            out[r] = out.get(r, 0) + 1
    return dict(sorted(out.items()))
