"""The table cast gives NumPy's float16 -> float32 bit for bit, for every half-precision value."""

from __future__ import annotations

import numpy as np

from audit.kernels.half import float16_to_float32


def test_every_float16_bit_pattern_casts_as_numpy_does() -> None:
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)  # NaNs, infinities, subnormals, -0
    got = float16_to_float32(every)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), every.astype(np.float32).view(np.uint32))


def test_shapes_and_non_contiguous_input() -> None:
    x = np.random.default_rng(0).standard_normal((7, 10)).astype(np.float16)
    for view in (x, x[:, ::2], x[2:3], x[:0]):
        got = float16_to_float32(view)
        assert got.shape == view.shape
        np.testing.assert_array_equal(got, view.astype(np.float32))
