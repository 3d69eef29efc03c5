"""64-bit FNV-1a hashes of Arrow strings, read from the array's buffers (no Python str per row)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit

_OFFSET = np.uint64(0xCBF29CE484222325)
_PRIME = np.uint64(0x100000001B3)


@njit(cache=True)
def _fnv1a(data: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    for i in range(out.shape[0]):
        h = _OFFSET
        for j in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[j])) * _PRIME
        out[i] = h


def hash_strings(values: pa.Array) -> np.ndarray:
    """FNV-1a 64 of each string's UTF-8 bytes (a null hashes as the empty string: mask it)."""
    arr = values.cast(pa.large_string())  # int64 offsets whatever the input
    n = len(arr)
    out = np.empty(n, np.uint64)
    if not n:
        return out
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64, count=n + 1, offset=arr.offset * 8)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    _fnv1a(data, offsets, out)
    return out
