"""64-bit FNV-1a hashes of Arrow strings, read from the array's buffers (no Python str per row),
and of their word-normalised form for ASCII strings (lower case, runs of non-alphanumeric
characters as one space, trimmed) in the same pass."""

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


@njit(cache=True)
def _fnv1a_words_ascii(data: np.ndarray, offsets: np.ndarray, out: np.ndarray, length: np.ndarray) -> None:
    """FNV-1a of each ASCII string after lower-casing and replacing runs of non-alphanumeric bytes by
    one space, trimmed; ``length`` is the normalised length, or -1 for a string with non-ASCII bytes."""
    for i in range(out.shape[0]):
        h = _OFFSET
        n = 0
        gap = False
        for j in range(offsets[i], offsets[i + 1]):
            c = data[j]
            if c >= 128:
                n = -1
                break
            if 65 <= c <= 90:
                c += 32
            if (97 <= c <= 122) or (48 <= c <= 57):
                if gap and n > 0:
                    h = (h ^ np.uint64(32)) * _PRIME
                    n += 1
                h = (h ^ np.uint64(c)) * _PRIME
                n += 1
                gap = False
            else:
                gap = True
        out[i] = h
        length[i] = n


def hash_words_ascii(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(hash of the word-normalised string, its length; -1 where the string is not ASCII and must
    be normalised by the Unicode path)."""
    arr = values.cast(pa.large_string())
    n = len(arr)
    out, length = np.empty(n, np.uint64), np.empty(n, np.int64)
    if not n:
        return out, length
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64, count=n + 1, offset=arr.offset * 8)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    _fnv1a_words_ascii(data, offsets, out, length)
    return out, length
