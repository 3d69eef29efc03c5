"""Per-string sums of vocabulary word weights for ASCII strings, read from Arrow buffers: the
linear part of a bag-of-words model (lower-cased runs of ``[A-Za-z0-9_]`` of at least
``min_len`` characters: scikit-learn's ``(?u)\\b\\w\\w+\\b`` is ``min_len=2``, an ONNX
Tokenizer on ``[a-zA-Z0-9_]+`` is ``min_len=1``) without a Python object per string or word.

A word is looked up by its FNV-1a hash in an open-addressing table and then compared byte by byte
with the vocabulary entry, so a hash collision can never count a word that is not in the
vocabulary. Strings with a non-ASCII byte are marked for the caller's Unicode path: Python's
``\\w`` and ``str.lower`` differ from their ASCII forms there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numba import njit

from audit.kernels.text_hash import _OFFSET, _PRIME, hash_strings  # one FNV-1a, looked up inline


@dataclass(frozen=True)
class WordTable:
    """A vocabulary as an open-addressing hash table: ``slots[h & mask]`` holds a word index or -1;
    word ``j``'s bytes are ``data[offsets[j]:offsets[j + 1]]``."""

    slots: np.ndarray  # int64, a power of two long
    hashes: np.ndarray  # uint64 per word
    offsets: np.ndarray  # int64, words + 1
    data: np.ndarray  # uint8

    @classmethod
    def of(cls, words: list[str]) -> WordTable:
        encoded = [w.encode("ascii") for w in words]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        offsets[1:] = np.cumsum([len(b) for b in encoded])
        data = np.frombuffer(b"".join(encoded), np.uint8).copy()
        hashes = hash_strings(pa.array(words, pa.string()))  # FNV-1a of each word's bytes
        size = 1 << max(4, int(2 * len(encoded) - 1).bit_length())  # load factor <= 1/2
        slots = np.full(size, -1, np.int64)
        _fill(slots, hashes)
        return cls(slots, hashes, offsets, data)


@njit(cache=True)
def _fill(slots: np.ndarray, hashes: np.ndarray) -> None:
    mask = slots.shape[0] - 1
    for j in range(hashes.shape[0]):
        s = np.int64(hashes[j] & np.uint64(mask))
        while slots[s] != -1:
            s = (s + 1) & mask
        slots[s] = j


@njit(cache=True)
def _is_word(c: np.uint8) -> bool:
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == 95


@njit(cache=True)
def _lookup(
    text: np.ndarray, start: int, end: int, h: np.uint64, slots: np.ndarray, hashes: np.ndarray,
    offsets: np.ndarray, data: np.ndarray,
) -> int:  # fmt: skip
    mask = slots.shape[0] - 1
    s = np.int64(h & np.uint64(mask))
    while slots[s] != -1:
        j = slots[s]
        if hashes[j] == h and offsets[j + 1] - offsets[j] == end - start:
            same = True
            for k in range(end - start):
                c = text[start + k]
                if 65 <= c <= 90:
                    c += 32
                if data[offsets[j] + k] != c:
                    same = False
                    break
            if same:
                return j
        s = (s + 1) & mask
    return -1


@njit(cache=True)
def _word_counts(
    text: np.ndarray, str_offsets: np.ndarray, slots: np.ndarray, hashes: np.ndarray,
    offsets: np.ndarray, data: np.ndarray, weights: np.ndarray, min_len: int, out: np.ndarray,
    squares: np.ndarray, ascii_ok: np.ndarray,
) -> None:  # fmt: skip
    """``out[i, k]`` = sum over string i's distinct vocabulary words j of count_j * weights[j, k];
    ``squares[i]`` = sum of (count_j * weights[j, 0])**2 (column 0 carries the words' scale, e.g.
    their idf, for an l2 norm)."""
    found = np.empty(64, np.int64)
    for i in range(out.shape[0]):
        a, b = str_offsets[i], str_offsets[i + 1]
        ok = True
        for p in range(a, b):
            if text[p] >= 128:
                ok = False
                break
        ascii_ok[i] = ok
        if not ok:
            continue
        m = 0
        p = a
        while p < b:
            if not _is_word(text[p]):
                p += 1
                continue
            q = p
            h = _OFFSET
            while q < b and _is_word(text[q]):
                c = text[q]
                if 65 <= c <= 90:
                    c += 32
                h = (h ^ np.uint64(c)) * _PRIME
                q += 1
            if q - p >= min_len:
                j = _lookup(text, p, q, h, slots, hashes, offsets, data)
                if j >= 0:
                    if m == found.shape[0]:
                        grown = np.empty(2 * m, np.int64)
                        grown[:m] = found
                        found = grown
                    found[m] = j
                    m += 1
            p = q
        if m == 0:
            continue
        words = np.sort(found[:m])
        run = 1
        for t in range(1, m + 1):
            if t < m and words[t] == words[t - 1]:
                run += 1
                continue
            j = words[t - 1]
            for k in range(weights.shape[1]):
                out[i, k] += run * weights[j, k]
            squares[i] += (run * weights[j, 0]) ** 2
            run = 1


def word_weight_sums(
    values: pa.Array, table: WordTable, weights: np.ndarray, min_len: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sums (n, K), squared-norm terms (n,), ascii mask (n,)) for ``values``' strings; rows where
    the mask is False hold zeros and must be scored by the Unicode path."""
    arr = values.cast(pa.large_string())
    n = len(arr)
    out = np.zeros((n, weights.shape[1]), np.float64)
    squares, ascii_ok = np.zeros(n, np.float64), np.zeros(n, np.bool_)
    if not n:
        return out, squares, ascii_ok
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64, count=n + 1, offset=arr.offset * 8)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    w = np.ascontiguousarray(weights, np.float64)
    t = table
    _word_counts(data, offsets, t.slots, t.hashes, t.offsets, t.data, w, min_len, out, squares, ascii_ok)
    return out, squares, ascii_ok


def l2_scaled(sums: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """``sums[:, 1:]`` divided by each row's l2 norm ``sqrt(squares)`` (0 for a row with no word),
    as an l2-normalised tf-idf vector dotted with each class's weights."""
    norm = np.sqrt(squares)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, sums[:, 1:] / norm, 0.0)
