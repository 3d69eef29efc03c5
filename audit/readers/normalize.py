"""The one mapping of every format's rows onto INGESTED_SCHEMA (shared by all readers).

Side problems (null, empty or non-UTF-8 caption; missing or empty image) are recorded in
``caption_problem`` / ``image_problem``: the row is still audited on its other side. Repeated keys
are counted (``SeenKeys``), never dropped.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.kernels.text_hash import hash_strings
from audit.row_identity import row_ids_for
from audit.schemas import INGESTED_SCHEMA
from audit.shards import ShardSpec
from audit.tables import single_array


class SeenKeys:
    """Keys already seen in a shard, as 8 bytes per key (sorted runs of 64-bit FNV-1a hashes of the
    keys' UTF-8 bytes, read from the Arrow buffers, merged like a log-structured merge tree), so
    duplicate detection costs no per-row Python objects. Two distinct keys share a hash with
    probability ~n²/2⁶⁵ (3e-8 for a million-row shard); a key crafted to collide can only change the
    count of repeated keys, never which row is which (rows are named by row_id)."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []
        self.repeated = 0  # rows whose key appeared earlier in the shard

    @staticmethod
    def hashes(keys: pa.Array | list[str]) -> np.ndarray:
        return hash_strings(keys if isinstance(keys, pa.Array) else pa.array(keys, pa.string()))

    def add(self, keys: pa.Array | list[str]) -> np.ndarray:
        """Record ``keys``; True where a key was seen before (earlier in this batch or shard)."""
        h = self.hashes(keys)
        seen = np.ones(len(h), dtype=bool)
        uniq, first = np.unique(h, return_index=True)
        known = np.zeros(uniq.size, dtype=bool)
        for run in self._runs:  # sorted queries: the lookups walk each run in order
            at = np.minimum(np.searchsorted(run, uniq), len(run) - 1)
            known |= run[at] == uniq
        seen[first] = known
        self.repeated += int(seen.sum())
        if uniq.size:
            self._runs.append(uniq)
        # merge equal-sized runs only (a binary counter): O(n log n) in all, never the big run per batch
        while len(self._runs) > 1 and len(self._runs[-2]) <= len(self._runs[-1]):
            b, a = self._runs.pop(), self._runs.pop()
            self._runs.append(_merge_sorted(a, b))
        return seen

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self._runs)

    def sorted_unique(self) -> np.ndarray:
        """Every distinct key hash of the shard, sorted (for counting keys repeated across shards)."""
        out = np.zeros(0, dtype=np.uint64)
        for run in self._runs:
            out = _merge_sorted(out, run)
        return out


def _merge_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sorted distinct values of two sorted distinct arrays (np.union1d, which re-sorts and
    hashes; a stable sort of two sorted runs is a linear merge)."""
    both = np.sort(np.concatenate([a, b]), kind="stable")
    keep = np.ones(both.size, dtype=bool)
    keep[1:] = both[1:] != both[:-1]
    return both[keep]


# Every character Python's str.strip() removes (str.isspace): a caption of only these is empty.
PY_WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


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


def caption_columns(col: pa.ChunkedArray | None, n: int) -> tuple[pa.Array, pa.Array]:
    """``decode_captions`` as Arrow arrays: string captions are checked in Arrow (no Python object
    per row); binary ones (webdataset .txt members) are decoded one by one."""
    if col is not None and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        captions = single_array(col.cast(pa.string()))
        blank = pc.equal(pc.utf8_length(pc.utf8_trim(captions, characters=PY_WHITESPACE)), 0)
        problems = pc.if_else(
            pc.is_null(captions),
            pa.scalar("caption_missing"),
            pc.if_else(blank, pa.scalar("caption_empty"), pa.scalar(None, pa.string())),
        )
        return captions, problems
    captions_list, problems_list = decode_captions(col, n)
    return pa.array(captions_list, pa.string()), pa.array(problems_list, pa.string())


def image_problems(image: pa.Array, status: pa.Array) -> pa.Array:
    """image_missing where a fetched row (status null or success) has no bytes; image_empty where
    it has zero bytes."""
    fetched = pc.fill_null(pc.equal(status, "success"), True)
    empty = pc.fill_null(pc.equal(pc.binary_length(image), 0), False)
    none = pa.scalar(None, pa.string())
    return pc.if_else(
        pc.and_(pc.is_null(image), fetched),
        pa.scalar("image_missing"),
        pc.if_else(empty, pa.scalar("image_empty"), none),
    )


def column_as(table: pa.Table, cols: dict[str, str], name: str, typ: pa.DataType) -> pa.Array:
    if name not in cols:
        return pa.nulls(table.num_rows, typ)
    col = table.column(cols[name])
    if name in ("key", "source_hash") or pa.types.is_string(typ):
        col = col.cast(pa.string()) if not pa.types.is_binary(col.type) else col
    return single_array(pc.cast(col, typ, safe=False) if col.type != typ else col)


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
        own = column_as(table, cols, "sample_id", pa.string())
    elif "key" in cols:
        own = column_as(table, cols, "key", pa.string())
    else:
        own = None
    row_ids = row_ids_for(spec.shard_id, start, n)
    if own is None:
        keys = row_ids
    else:
        keys = pc.if_else(pc.or_(pc.is_null(own), pc.fill_null(pc.equal(own, ""), True)), row_ids, own)

    captions, caption_problems = caption_columns(
        table.column(cols["caption"]) if "caption" in cols else None, n
    )
    image = column_as(table, cols, "image", pa.binary()) if "image" in cols else pa.nulls(n, pa.binary())
    if carries_images:
        problems = image_problems(image, column_as(table, cols, "fetch_status", pa.string()))
    else:
        problems = pa.nulls(n, pa.string())
    # repeated keys are counted, never used to pick or drop a row: rows are named by row_id
    (seen or SeenKeys()).add(single_array(keys))

    arrays = {
        "row_id": row_ids,
        "key": keys,
        "shard_id": pa.repeat(pa.scalar(spec.shard_id, pa.string()), n),
        "row_index": pa.array(row_index),
        "caption": captions,
        "caption_problem": caption_problems,
        "image_problem": problems,
        "image": image,
        "quarantine_reason": pa.nulls(n, pa.string()),
        "quarantine_detail": pa.nulls(n, pa.string()),
    }
    for f in INGESTED_SCHEMA:
        if f.name not in arrays:
            arrays[f.name] = column_as(table, cols, f.name, f.type) if f.name in cols else pa.nulls(n, f.type)
    return pa.table([arrays[f.name] for f in INGESTED_SCHEMA], schema=INGESTED_SCHEMA)
