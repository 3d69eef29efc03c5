"""What apply-removals does to each shard: its input files (from the run's manifest), where each
goes under DEST (the inputs' layout below their common folder, so the cleaned set is discovered
and named like the original), and which row indices leave it."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audit.errors import InputFileError
from audit.row_identity import split_row_id
from audit.schemas import Manifest, ShardRecord
from audit.shards import check_out_outside_inputs

STATE_FOLDER = "_removals"  # discovery skips names starting with "_"


@dataclass
class ShardJob:
    record: ShardRecord
    sources: dict[str, str]  # role (main, sidecar, img_emb, txt_emb, npz, embeddings_json) -> URL
    targets: dict[str, str] = field(default_factory=dict)  # role -> path on DEST's filesystem
    drop: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted row indices
    keys: dict[int, str] = field(default_factory=dict)  # row index -> the key the list names

    @property
    def digest(self) -> str:
        """Identifies this shard's work: the source's content hash and the rows to drop."""
        h = hashlib.sha256(self.record.sha256.encode())
        h.update(self.drop.tobytes())
        return h.hexdigest()[:16]


def _exists(url: str) -> bool:
    fs, path = fsspec.core.url_to_fs(url)
    return fs.exists(path)


def shard_sources(record: ShardRecord) -> dict[str, str]:
    """The input files of a shard, as discovery paired them (audit.shards.discover_shards)."""
    path = record.path
    stem = path.rsplit(".", 1)[0]
    if record.format == "webdataset":
        side = stem + ".parquet"
        return {"main": path, **({"sidecar": side} if _exists(side) else {})}
    if record.format == "clip_retrieval":
        root = posixpath.dirname(posixpath.dirname(path))
        n = posixpath.basename(path)[len("metadata_") : -len(".parquet")]
        out = {
            "main": path,
            "img_emb": posixpath.join(root, "img_emb", f"img_emb_{n}.npy"),
            "txt_emb": posixpath.join(root, "text_emb", f"text_emb_{n}.npy"),
        }
        if _exists(posixpath.join(root, "embeddings.json")):
            out["embeddings_json"] = posixpath.join(root, "embeddings.json")
        return out
    if record.format == "datacomp":
        return {"main": path, "npz": stem + ".npz"}
    return {"main": path}


def _anchor(record: ShardRecord) -> str:
    """The folder whose layout is kept: a clip-retrieval set's root, else the shard's folder."""
    folder = posixpath.dirname(record.path)
    return posixpath.dirname(folder) if record.format == "clip_retrieval" else folder


def _strip(url: str) -> tuple[str, str]:
    fs, path = fsspec.core.url_to_fs(url)
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return ("file" if proto in ("file", "local") else proto), path


def layout(records: Iterable[ShardRecord]) -> str:
    """The common folder of all shards' anchors (kept below DEST)."""
    stripped = [_strip(_anchor(r)) for r in records]
    protocols = {p for p, _ in stripped}
    if len(protocols) > 1:
        raise InputFileError(f"the run's shards lie on several filesystems ({', '.join(sorted(protocols))})")
    return posixpath.commonpath([p for _, p in stripped])


def read_removal_list(path: str, manifest: Manifest, *, check_run: bool) -> pa.Table:
    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        raise InputFileError(
            f"{path}: no removal list (run `mmaudit report --run RUN` first, or give --list)"
        )
    try:
        with fs.open(p, "rb") as f:
            table = pq.read_table(f)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputFileError(f"{path}: not a readable removal list ({str(e).splitlines()[0]})") from None
    missing = [n for n in ("row_id", "key") if n not in table.column_names]
    if missing:
        raise InputFileError(
            f"{path}: not a removal list (no {missing[0]!r} column; see docs/removal-lists.md)"
        )
    meta = table.schema.metadata or {}
    made_for = meta.get(b"mmaudit.config_hash", b"").decode()
    if check_run and made_for and made_for != manifest.config_hash:
        raise InputFileError(
            f"{path}: written for another run (config hash {made_for}, this run's is {manifest.config_hash})"
        )
    return table


def plan(manifest: Manifest, removals: pa.Table, dest: str, list_path: str) -> tuple[list[ShardJob], str]:
    """One job per shard of the run (failed shards included: copied unchanged) and the common
    source folder. A row id naming no shard of the run, or a failed one, is an error."""
    records = {r.shard_id: r for r in manifest.shards}
    base = layout(records.values())
    check_out_outside_inputs([base, *manifest.config.get("shards", [])], dest)
    jobs = {sid: ShardJob(r, shard_sources(r)) for sid, r in records.items()}
    _, dest_root = fsspec.core.url_to_fs(dest)
    drops: dict[str, list[int]] = {}
    for row_id, key in zip(
        removals.column("row_id").to_pylist(), removals.column("key").to_pylist(), strict=True
    ):
        try:
            shard_id, index = split_row_id(row_id)
        except ValueError as e:
            raise InputFileError(f"{list_path}: {e}") from None
        job = jobs.get(shard_id)
        if job is None:
            raise InputFileError(f"{list_path}: row {row_id} names no shard of this run")
        if job.record.status != "done":
            raise InputFileError(
                f"{list_path}: row {row_id} is in shard {shard_id}, which failed in the audit"
            )
        if index >= job.record.rows_in:
            raise InputFileError(
                f"{list_path}: row {row_id} is past the end of its shard ({job.record.rows_in} rows)"
            )
        drops.setdefault(shard_id, []).append(index)
        job.keys[index] = key
    for sid, job in jobs.items():
        job.drop = np.unique(np.asarray(drops.get(sid, []), np.int64))
        for role, url in job.sources.items():
            _, path = _strip(url)
            rel = posixpath.relpath(path, base)
            if rel.startswith(".."):
                raise InputFileError(f"{url}: outside the shards' common folder {base}")
            job.targets[role] = posixpath.join(dest_root, rel)
    return list(jobs.values()), base
