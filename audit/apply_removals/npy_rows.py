"""Drop rows of a 2-D .npy array while streaming it: header, then a slice of rows at a time, read
forward only (so it works on remote files and on compressed .npz members too)."""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from audit.errors import InputFileError
from audit.shards import embedding_header

ROWS_PER_SLICE = 65_536


def filter_npy(src: BinaryIO, dst: BinaryIO, drop: np.ndarray, source: str) -> tuple[int, int]:
    """Write ``src``'s array without the rows in ``drop`` (sorted row indices; those past the
    array's end are ignored: the metadata can have more rows than an embedding file) to ``dst``.
    Returns (rows read, rows written)."""
    header = embedding_header(src, source)
    rows, dim = header.shape
    dtype = header.dtype
    drop = drop[drop < rows]
    out_rows = rows - len(drop)
    if header.fortran:  # column-major: rows are not contiguous; such files are read whole (rare)
        data = np.frombuffer(src.read(rows * dim * dtype.itemsize), dtype=dtype).reshape(dim, rows).T
        _write_header(dst, dtype, (out_rows, dim))
        dst.write(np.ascontiguousarray(np.delete(data, drop, axis=0)).tobytes())
        return rows, out_rows
    _write_header(dst, dtype, (out_rows, dim))
    row_bytes = dim * dtype.itemsize
    for start in range(0, rows, ROWS_PER_SLICE):
        n = min(ROWS_PER_SLICE, rows - start)
        data = src.read(n * row_bytes)
        if len(data) != n * row_bytes:
            raise InputFileError(f"{source}: .npy file ends early (truncated)")
        block = np.frombuffer(data, dtype=dtype).reshape(n, dim)
        here = drop[(drop >= start) & (drop < start + n)] - start
        if len(here):
            block = np.delete(block, here, axis=0)
        dst.write(block.tobytes())
    return rows, out_rows


def _write_header(dst: BinaryIO, dtype: np.dtype, shape: tuple[int, int]) -> None:
    d = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    try:
        np.lib.format.write_array_header_1_0(dst, d)
    except ValueError:  # a header over 64 KiB (never for 2-D numeric arrays, but allowed)
        np.lib.format.write_array_header_2_0(dst, d)
