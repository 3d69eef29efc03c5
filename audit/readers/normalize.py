"""The one mapping of every format's rows onto INGESTED_SCHEMA (shared by all readers).

Side problems (null, empty or non-UTF-8 caption; missing or empty image) are recorded in
``caption_problem`` / ``image_problem``: the row is still audited on its other side. Repeated keys
are counted (``SeenKeys``), never dropped.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.row_identity import row_ids_for
from audit.schemas import INGESTED_SCHEMA
from audit.shards import ShardSpec


class SeenKeys:
    """Keys already seen in a shard, as 8 bytes per key (sorted runs of 64-bit BLAKE2b hashes, merged
    like a log-structured merge tree), so duplicate detection costs no per-row Python objects.
    Two distinct keys share a hash with probability ~n²/2⁶⁵ (3e-8 for a million-row shard)."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []
        self.repeated = 0  # rows whose key appeared earlier in the shard

    @staticmethod
    def hashes(keys: list[str]) -> np.ndarray:
        return np.fromiter(
            (int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little") for k in keys),
            dtype=np.uint64,
            count=len(keys),
        )

    def add(self, keys: list[str]) -> np.ndarray:
        """Record ``keys``; True where a key was seen before (earlier in this batch or shard)."""
        h = self.hashes(keys)
        seen = np.ones(len(h), dtype=bool)
        uniq, first = np.unique(h, return_index=True)
        seen[first] = False
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, h), len(run) - 1)
            seen |= run[at] == h
        self.repeated += int(seen.sum())
        if uniq.size:
            self._runs.append(uniq)
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            b, a = self._runs.pop(), self._runs.pop()
            self._runs.append(np.union1d(a, b))
        return seen

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self._runs)

    def sorted_unique(self) -> np.ndarray:
        """Every distinct key hash of the shard, sorted (for counting keys repeated across shards)."""
        out = np.zeros(0, dtype=np.uint64)
        for run in self._runs:
            out = np.union1d(out, run)
        return out


def decode_captions(col: pa.ChunkedArray | None, n: int) -> tuple[list[str | None], list[str | None]]:
    """Captions as str, plus a per-row caption problem (null, empty, bytes that are not UTF-8).

    A caption problem does not quarantine the row: a row with a usable image is audited image-only.
    """
    if col is None:
        return [None] * n, ["caption_missing"] * n
    values = col.to_pylist()
    captions: list[str | None] = []
    problems: list[str | None] = []
    for v in values:
        if v is None:
            captions.append(None)
            problems.append("caption_missing")
        elif isinstance(v, bytes):
            try:
                captions.append(v.decode("utf-8"))
                problems.append(None if v.strip() else "caption_empty")
            except UnicodeDecodeError:
                captions.append(v.decode("utf-8", "replace"))
                problems.append("caption_not_utf8")
        else:
            captions.append(v)
            problems.append(None if v.strip() else "caption_empty")
    return captions, problems


def column_as(table: pa.Table, cols: dict[str, str], name: str, typ: pa.DataType) -> pa.Array:
    if name not in cols:
        return pa.nulls(table.num_rows, typ)
    col = table.column(cols[name])
    if name in ("key", "source_hash") or pa.types.is_string(typ):
        col = col.cast(pa.string()) if not pa.types.is_binary(col.type) else col
    return single_array(pc.cast(col, typ, safe=False) if col.type != typ else col)


def single_array(col: pa.ChunkedArray) -> pa.Array:
    """One array without copying where it already is one (combine_chunks copies even then)."""
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def normalize(
    table: pa.Table,
    cols: dict[str, str],
    spec: ShardSpec,
    *,
    carries_images: bool,
    start: int = 0,
    seen: SeenKeys | None = None,
) -> pa.Table:
    """Map a shard's own columns onto INGESTED_SCHEMA and mark rows that cannot be scored.

    ``table`` holds the shard's rows ``start .. start + num_rows``; ``seen`` carries the keys of
    earlier batches of the same shard (a fresh one treats ``table`` as the whole shard).
    """
    n = table.num_rows
    row_index = np.arange(start, start + n, dtype=np.int64)
    # the dataset's own id first: img2dataset's `key` is renumbered per fetch output folder, while
    # LAION's SAMPLE_ID / DataComp's uid stay unique corpus-wide (decisions and removal lists key on it)
    if "sample_id" in cols:
        keys = column_as(table, cols, "sample_id", pa.string()).to_pylist()
    elif "key" in cols:
        keys = column_as(table, cols, "key", pa.string()).to_pylist()
    else:
        keys = [None] * n
    keys = [k if k not in (None, "") else f"{spec.shard_id}:{start + i}" for i, k in enumerate(keys)]

    captions, caption_problems = decode_captions(
        table.column(cols["caption"]) if "caption" in cols else None, n
    )
    image_problems: list[str | None] = [None] * n
    status = column_as(table, cols, "fetch_status", pa.string()).to_pylist()
    image = column_as(table, cols, "image", pa.binary()) if "image" in cols else pa.nulls(n, pa.binary())
    if carries_images:
        lengths = pc.binary_length(image).to_pylist()
        for i, length in enumerate(lengths):
            fetched = status[i] in (None, "success")
            if length is None and fetched:
                image_problems[i] = "image_missing"
            elif length == 0:
                image_problems[i] = "image_empty"
    # repeated keys are counted, never used to pick or drop a row: rows are named by row_id
    (seen or SeenKeys()).add(keys)

    arrays = {
        "row_id": row_ids_for(spec.shard_id, start, n),
        "key": pa.array(keys, pa.string()),
        "shard_id": pa.array([spec.shard_id] * n, pa.string()),
        "row_index": pa.array(row_index),
        "caption": pa.array(captions, pa.string()),
        "caption_problem": pa.array(caption_problems, pa.string()),
        "image_problem": pa.array(image_problems, pa.string()),
        "image": image,
        "quarantine_reason": pa.nulls(n, pa.string()),
        "quarantine_detail": pa.nulls(n, pa.string()),
    }
    for f in INGESTED_SCHEMA:
        if f.name not in arrays:
            arrays[f.name] = column_as(table, cols, f.name, f.type) if f.name in cols else pa.nulls(n, f.type)
    return pa.table([arrays[f.name] for f in INGESTED_SCHEMA], schema=INGESTED_SCHEMA)
