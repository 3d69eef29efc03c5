"""Precomputed embeddings (clip-retrieval .npy, DataComp .npz) read a slice of rows at a time and
put on their metadata rows."""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.errors import InputFileError
from audit.kernels.embedding_rows import checked_rows
from audit.readers.base import ShardReader
from audit.readers.files import open_input
from audit.readers.parquet import parquet_batches
from audit.shards import embedding_header
from audit.tables import set_columns, single_array


class NpyRows:
    """Row slices of a 2-D .npy array read from a seekable file (local, remote or a .npz member)
    without loading the array: ``rows[a:b]`` seeks and reads those rows only.

    ``np.load(mmap_mode="r")`` would do the same for local .npy files only; this covers remote
    files (fsspec range reads) and DataComp's .npz members too, with one code path."""

    def __init__(self, f: BinaryIO, source: str) -> None:
        self.source = source
        self._f = f
        header = embedding_header(f, source)  # a 2-D numeric array, or a one-line InputFileError
        shape, fortran, dtype = header.shape, header.fortran, header.dtype
        self.shape: tuple[int, int] = shape
        self.dtype: np.dtype = dtype
        self._whole = None
        self._offset = f.tell()
        if fortran:  # column-major: rows are not contiguous, so it is read whole (rare)
            f.seek(0)
            self._whole = np.lib.format.read_array(f, allow_pickle=False)
        self._row_bytes = dtype.itemsize * shape[1]

    @property
    def ndim(self) -> int:
        return 2

    def __getitem__(self, sl: slice) -> np.ndarray:
        a, b, _ = sl.indices(self.shape[0])
        b = max(a, b)
        if self._whole is not None:
            return self._whole[a:b]
        self._f.seek(self._offset + a * self._row_bytes)
        want = (b - a) * self._row_bytes
        data = self._f.read(want)
        if len(data) != want:
            raise InputFileError(f"{self.source}: .npy file ends early (truncated)")
        return np.frombuffer(data, dtype=self.dtype).reshape(b - a, self.shape[1])


def attach_embeddings(
    base: pa.Table, arrays: dict[str, tuple[np.ndarray | NpyRows, str]], start: int = 0
) -> pa.Table:
    """Put precomputed image/text embeddings on their metadata rows.

    ``base`` holds metadata rows ``start .. start + n``; each array gives the whole file's rows
    (an ndarray or an ``NpyRows``) and only those ``n`` rows are read. Rows without an embedding
    row (the files disagree in length) and rows holding NaN, inf or an all-zero vector are
    quarantined; the rest are kept as given and L2-normalised by the CLIP stage.
    """
    n = base.num_rows
    reasons = base.column("quarantine_reason")
    details = base.column("quarantine_detail")
    columns: dict[str, pa.Array] = {}
    row = np.arange(n)
    for name, (emb, source) in arrays.items():
        kept, row_finite, row_nonzero = checked_rows(emb[start : start + n])  # one pass
        m = kept.shape[0]
        finite = np.zeros(n, bool)
        nonzero = np.zeros(n, bool)
        finite[:m], nonzero[:m] = row_finite, row_nonzero
        # the first problem found names the row: earlier reasons are kept
        free = pc.is_null(reasons).to_numpy(zero_copy_only=False)
        cases = (
            (free & (row >= m), "embedding_missing", f"{posixpath.basename(source)} has {emb.shape[0]} rows"),
            (free & (row < m) & ~finite, "embedding_invalid", f"{name} holds NaN or inf"),
            (free & (row < m) & finite & ~nonzero, "embedding_invalid", f"{name} is all zeros"),
        )
        for mask, reason, detail in cases:
            if mask.any():
                hit = pa.array(mask)
                reasons = pc.if_else(hit, pa.scalar(reason), reasons)
                details = pc.if_else(hit, pa.scalar(detail), details)
        values = pa.array(kept.reshape(-1), pa.float32())
        offsets = pa.array(np.arange(0, kept.size + 1, kept.shape[1], dtype=np.int32))
        col = pa.ListArray.from_arrays(offsets, values)
        if m < n:
            col = pa.concat_arrays([col, pa.nulls(n - m, pa.list_(pa.float32()))])
        columns[name] = col
    columns["quarantine_reason"] = _array(reasons)
    columns["quarantine_detail"] = _array(details)
    return set_columns(base, columns)


def _array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    return single_array(col)


def embedding_batches(
    r: ShardReader, arrays: dict[str, tuple[NpyRows, str]], *, images: bool
) -> Iterator[pa.Table]:
    """Metadata batches with their embedding rows; ``images``: the format may carry image bytes."""
    for table, cols in parquet_batches(r, r.spec.format):
        start = r.rows
        base = r._normalize(table, cols, carries_images=images and "image" in cols)
        del table
        yield attach_embeddings(base, arrays, start)  # batches() adds its rows to r.rows
        del base
    metadata_rows = r.rows
    r.notes.extend(
        f"{source}: {emb.shape[0]} embedding rows for {metadata_rows} metadata rows"
        for emb, source in arrays.values()
        if emb.shape[0] != metadata_rows
    )


@contextlib.contextmanager
def open_npy(url: str) -> Iterator[NpyRows]:
    with open_input(url) as f:
        yield NpyRows(f, url)
