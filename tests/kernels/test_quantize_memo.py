"""Quantizing the same read-only memory twice gives the first result; anything else quantizes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from audit.kernels.int8_cpu import quantize_int8_cpu
from audit.kernels.quantize_memo import forget, quantize_once
from audit.tables import embedding_matrix, list_column


def _counting():
    calls = []

    def quantize(x, block_size):
        calls.append(x.shape)
        return quantize_int8_cpu(x, block_size=block_size)

    return quantize, calls


def test_same_read_only_memory_is_quantized_once_and_gives_the_same_codes() -> None:
    forget()
    quantize, calls = _counting()
    x = np.random.default_rng(0).standard_normal((100, 64)).astype(np.float32)
    x.flags.writeable = False
    col = list_column(100, np.arange(100), x)  # zero-copy: the column's values are x's memory
    _, back = embedding_matrix(col)
    a = quantize_once(x, 64, quantize)
    b = quantize_once(back, 64, quantize)
    assert a is b and calls == [(100, 64)]
    np.testing.assert_array_equal(a.codes, quantize_int8_cpu(x, block_size=64).codes)
    # another block size, other memory with equal values, a writable array: quantized anew
    quantize_once(x, 32, quantize)
    quantize_once(np.array(x), 64, quantize)
    w = np.array(x)
    quantize_once(w, 64, quantize)
    quantize_once(w, 64, quantize)
    assert len(calls) == 5
    forget()
    quantize_once(x, 64, quantize)
    assert len(calls) == 6


def test_list_column_of_every_row_keeps_values_and_a_gathered_one_nulls_the_rest() -> None:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    whole = list_column(4, np.arange(4), x)
    assert whole.to_pylist() == x.tolist()
    part = list_column(4, np.array([2, 0]), x[:2])
    assert part.to_pylist() == [x[1].tolist(), None, x[0].tolist(), None]
    assert isinstance(whole, pa.ListArray) and whole.null_count == 0
