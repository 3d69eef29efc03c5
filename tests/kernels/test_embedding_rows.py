"""The reader's one-pass embedding rows: NumPy's float32 values bit for bit, and each row's checks
(all finite, not all zero) as NumPy computes them, for float16, float32 and float64 files."""

from __future__ import annotations

import numpy as np
import pytest

from audit.kernels.embedding_rows import checked_rows


def _reference(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(over="ignore"):
        x = rows.astype(np.float32)
    return x, np.isfinite(x).all(axis=1), (x != 0).any(axis=1)


def test_every_float16_bit_pattern_casts_as_numpy_does() -> None:
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(256, 256)  # NaNs, infs, -0
    got, finite, nonzero = checked_rows(every)
    want, want_finite, want_nonzero = _reference(every)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(finite, want_finite)
    np.testing.assert_array_equal(nonzero, want_nonzero)
    assert not finite[0x7C00 // 256] and finite[0]  # the row holding +inf; the row of +0 and subnormals


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_row_checks_match_numpy(dtype: type) -> None:
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((64, 40)).astype(dtype)
    rows[1, 7] = np.nan
    rows[2, 39] = np.inf
    rows[3, 0] = -np.inf
    rows[4] = 0.0
    rows[5] = -0.0
    rows[6] = 0.0
    rows[6, 20] = np.finfo(dtype).tiny / 4 if dtype != np.float64 else 1e-40  # a subnormal: not zero
    if dtype == np.float64:
        rows[7, 3] = 1e300  # too large for float32: inf once cast, so the row is not finite
    got, finite, nonzero = checked_rows(rows)
    want, want_finite, want_nonzero = _reference(rows)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(finite, want_finite)
    np.testing.assert_array_equal(nonzero, want_nonzero)
    assert not finite[[1, 2, 3]].any() and not nonzero[[4, 5]].any() and nonzero[6]
    assert finite[7] == (dtype != np.float64)


def test_non_contiguous_empty_and_zero_width_rows() -> None:
    x = np.random.default_rng(0).standard_normal((7, 10)).astype(np.float16)
    for view in (x[:, ::2], x[2:3], x[:0], np.zeros((3, 0), np.float16), np.zeros((3, 0), np.float32)):
        got, finite, nonzero = checked_rows(view)
        want, want_finite, want_nonzero = _reference(view)
        assert got.shape == view.shape
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(finite, want_finite)
        np.testing.assert_array_equal(nonzero, want_nonzero)


def test_contiguous_float32_rows_are_not_copied() -> None:
    x = np.ones((4, 8), np.float32)
    x.flags.writeable = False  # as the .npy reader hands them over
    got, _, _ = checked_rows(x)
    assert got is x or np.shares_memory(got, x)


def test_one_dimensional_input_is_refused() -> None:
    with pytest.raises(ValueError, match="2-D"):
        checked_rows(np.zeros(5, np.float32))
