"""Small helpers over pyarrow tables shared by the stages."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def set_columns(table: pa.Table, columns: Mapping[str, pa.Array]) -> pa.Table:
    """Replace columns that exist, append the others; row count never changes."""
    for name, arr in columns.items():
        if len(arr) != table.num_rows:
            raise ValueError(f"column {name}: {len(arr)} values for {table.num_rows} rows")
        idx = table.schema.get_field_index(name)
        table = table.set_column(idx, name, arr) if idx >= 0 else table.append_column(name, arr)
    return table


def single_array(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One array, without copying where it already is one (``combine_chunks`` copies even a
    single chunk: profiled, 16 MB per embedding column and batch)."""
    if not isinstance(col, pa.ChunkedArray):
        return col
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def active_rows(table: pa.Table) -> np.ndarray:
    """Indices of the rows no stage has quarantined yet."""
    return np.flatnonzero(pc.is_null(table.column("quarantine_reason")).to_numpy(zero_copy_only=False))


def has_usable_caption(table: pa.Table) -> np.ndarray:
    """Per row: the caption can be scored (no ``caption_problem``); False marks image-only rows."""
    if "caption_problem" not in table.column_names:
        return pc.is_valid(table.column("caption")).to_numpy(zero_copy_only=False)
    return pc.is_null(table.column("caption_problem")).to_numpy(zero_copy_only=False)


def scatter(n: int, idx: np.ndarray, values: np.ndarray, typ: pa.DataType) -> pa.Array:
    """A length-n array holding values at idx and nulls elsewhere."""
    out = np.zeros(n, dtype=values.dtype if values.size else np.float32)
    mask = np.ones(n, dtype=bool)
    out[idx] = values
    mask[idx] = False
    return pa.array(out, type=typ, mask=mask)


def scatter_array(n: int, idx: np.ndarray, values: pa.Array) -> pa.Array:
    """``scatter`` for an Arrow array of any type (strings, lists): one take, nulls where no value."""
    at = np.zeros(n, np.int64)
    at[idx] = np.arange(len(idx))
    missing = np.ones(n, bool)
    missing[idx] = False
    if not len(values):  # nothing to take from: every row is null
        return pa.nulls(n, values.type)
    return values.take(pa.array(at, mask=missing))


def quarantine(table: pa.Table, reasons: Mapping[int, tuple[str, str]]) -> pa.Table:
    """Mark rows (index -> (reason, detail)) as quarantined, keeping earlier reasons."""
    if not reasons:
        return table
    r = table.column("quarantine_reason").to_pylist()
    d = table.column("quarantine_detail").to_pylist()
    for i, (reason, detail) in reasons.items():
        if r[i] is None:
            r[i], d[i] = reason, detail
    return set_columns(
        table, {"quarantine_reason": pa.array(r, pa.string()), "quarantine_detail": pa.array(d, pa.string())}
    )


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Exactly ``schema``'s columns, in order; columns no stage produced (a scorer that is not
    configured) are nulls, so every file of a run has the same schema."""
    n = table.num_rows
    have = set(table.column_names)  # column_names builds a new list on every access
    cols = [table.column(f.name) if f.name in have else pa.nulls(n, f.type) for f in schema]
    return pa.table(cols, schema=schema.remove_metadata()).cast(schema)


def embedding_matrix(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the rows holding an embedding, their vectors as an (m, D) float32 matrix), read
    from the list column's buffers without a Python object per value."""
    arr = single_array(col)
    idx = np.flatnonzero(pc.is_valid(arr).to_numpy(zero_copy_only=False))
    if not idx.size:
        return idx, np.zeros((0, 0), np.float32)
    present = arr.take(pa.array(idx)) if idx.size < len(arr) else arr
    lengths = pc.list_value_length(present).to_numpy(zero_copy_only=False)
    if lengths.min() != lengths.max():  # ragged: as np.asarray of the Python lists would refuse
        raise ValueError(f"embeddings of different lengths ({lengths.min()} and {lengths.max()})")
    flat = present.flatten().to_numpy(zero_copy_only=False)
    return idx, np.asarray(flat, np.float32).reshape(idx.size, int(lengths[0]))


def list_column(n: int, idx: np.ndarray, matrix: np.ndarray | None) -> pa.Array:
    """A length-n list<float32> column with ``matrix[j]`` at row ``idx[j]`` and nulls elsewhere."""
    typ = pa.list_(pa.float32())
    if matrix is None or not len(idx):
        return pa.nulls(n, typ)
    if len(idx) == n and np.array_equal(idx, np.arange(n)):  # every row, in order: no copy
        values = np.ascontiguousarray(matrix, np.float32)
        offsets = pa.array(np.arange(0, values.size + 1, max(1, values.shape[1]), dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1)), type=typ)
    order = np.argsort(idx, kind="stable")
    rows, values = np.asarray(idx)[order], np.ascontiguousarray(matrix[order], np.float32)
    lengths = np.zeros(n, np.int64)
    lengths[rows] = values.shape[1]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    mask = np.ones(n, bool)
    mask[rows] = False
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(values.reshape(-1)), type=typ, mask=pa.array(mask)
    )
