"""float16 -> float32 by a 65,536-entry table built from NumPy's own cast, in one Numba pass:
bit-identical to ``astype(np.float32)`` (NaN payloads and infinities included) and ~4x faster here
(profiled: NumPy's half-precision cast was the largest cost of reading precomputed embeddings)."""

from __future__ import annotations

import numpy as np
from numba import njit

_TABLE = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


@njit(cache=True)
def _convert(bits: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    for i in range(bits.size):
        out[i] = table[bits[i]]


def float16_to_float32(x: np.ndarray) -> np.ndarray:
    """``x.astype(np.float32)`` for a float16 array of any shape."""
    src = np.ascontiguousarray(x)
    out = np.empty(src.shape, np.float32)
    if src.size:
        _convert(src.view(np.uint16).reshape(-1), _TABLE, out.reshape(-1))
    return out
