"""Embedding columns to and from NumPy without a Python object per value."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from audit.tables import embedding_matrix, list_column, scatter_array


def test_embedding_matrix_reads_present_rows_in_order() -> None:
    col = pa.chunked_array(
        [pa.array([[1, 2], None], pa.list_(pa.float32())), pa.array([[3, 4]], pa.list_(pa.float32()))]
    )
    idx, m = embedding_matrix(col)
    assert idx.tolist() == [0, 2]
    np.testing.assert_array_equal(m, np.array([[1, 2], [3, 4]], np.float32))
    assert m.dtype == np.float32


def test_embedding_matrix_of_all_nulls_is_empty() -> None:
    idx, m = embedding_matrix(pa.nulls(3, pa.list_(pa.float32())))
    assert idx.size == 0 and m.shape == (0, 0)


def test_ragged_embeddings_are_refused_like_numpy_would() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        embedding_matrix(pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float32())))


def test_list_column_puts_rows_back_at_their_indices_and_nulls_elsewhere() -> None:
    got = list_column(5, np.array([3, 0]), np.array([[1, 2], [3, 4]], np.float32))
    expected = pa.array([[3, 4], None, None, [1, 2], None], pa.list_(pa.float32()))
    assert got.equals(expected)
    assert list_column(2, np.array([], np.int64), None).equals(pa.nulls(2, pa.list_(pa.float32())))


def test_round_trip_equals_the_python_list_construction() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    rows: list = [v.tolist() if i % 3 else None for i, v in enumerate(vectors)]
    col = pa.array(rows, pa.list_(pa.float32()))
    idx, m = embedding_matrix(col)
    assert list_column(len(rows), idx, m).equals(col)


def test_scatter_array_puts_each_value_on_its_row_and_null_elsewhere() -> None:
    values = pa.array([["a"], [], None, ["b", "c"]], pa.list_(pa.string()))
    got = scatter_array(7, np.array([5, 0, 3, 6]), values)
    assert got.type == values.type
    assert got.to_pylist() == [[], None, None, None, None, ["a"], ["b", "c"]]
    assert scatter_array(3, np.array([], np.int64), pa.array([], pa.string())).to_pylist() == [None] * 3
    strings = scatter_array(4, np.array([1, 2]), pa.array(["en", "und"]))
    assert strings.to_pylist() == [None, "en", "und", None]
