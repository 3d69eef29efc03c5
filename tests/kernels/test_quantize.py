"""Block-wise int8 quantization: CPU kernel against the NumPy reference, error bounds, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.kernels.int8_cpu import dequantize_int8_cpu, dequantized_norms_cpu, quantize_int8_cpu
from audit.kernels.quantize import CODE_MAX, QuantizedEmbeddings, check_block_size
from audit.kernels.reference import dequantize_ref, quantize_ref
from audit.kernels.synthetic import clip_like_pairs


def test_quantize_cpu_matches_numpy_reference_bit_for_bit(pairs: tuple[np.ndarray, np.ndarray]) -> None:
    x = pairs[0][:4000]
    got, ref = quantize_int8_cpu(x), quantize_ref(x)
    np.testing.assert_array_equal(got.codes, ref.codes)
    np.testing.assert_array_equal(got.scales, ref.scales)
    np.testing.assert_allclose(got.norms, ref.norms, rtol=1e-6)
    np.testing.assert_array_equal(dequantize_int8_cpu(got), dequantize_ref(ref))


@pytest.mark.parametrize("block_size", [32, 64, 128])
def test_roundtrip_error_is_at_most_half_a_step_per_block(
    pairs: tuple[np.ndarray, np.ndarray], block_size: int
) -> None:
    x = pairs[0][:4000]
    q = quantize_int8_cpu(x, block_size)
    err = np.abs(dequantize_int8_cpu(q) - x).reshape(len(x), -1, block_size).max(axis=2)
    # floor(y + 0.5) is off by at most half a code; float32 rounding adds a hair.
    assert np.all(err <= q.scales * (0.5 + 1e-4))
    amax = np.abs(x).reshape(len(x), -1, block_size).max(axis=2)
    np.testing.assert_allclose(q.scales, amax / CODE_MAX, rtol=1e-6)


def test_codes_use_the_full_symmetric_range_and_never_minus_128(pairs: tuple[np.ndarray, np.ndarray]) -> None:
    q = quantize_int8_cpu(pairs[1][:2000])
    blocks = q.codes.reshape(len(q), -1, q.block_size).astype(np.int16)
    assert np.all(np.abs(blocks).max(axis=2) == CODE_MAX)  # each block's absmax maps to +-127
    assert q.codes.min() >= -CODE_MAX


def test_norms_are_the_norms_of_the_dequantized_rows(pairs: tuple[np.ndarray, np.ndarray]) -> None:
    q = quantize_int8_cpu(pairs[0][:3000])
    expected = np.linalg.norm(dequantize_int8_cpu(q).astype(np.float64), axis=1)
    np.testing.assert_allclose(q.norms, expected, rtol=1e-5)
    np.testing.assert_allclose(dequantized_norms_cpu(q.codes, q.scales, q.block_size), q.norms, rtol=1e-6)
    assert np.all(np.abs(q.norms - 1.0) < 2e-3)  # unit inputs stay (nearly) unit


def test_all_zero_blocks_get_zero_scale_and_codes() -> None:
    x = np.zeros((3, 128), np.float32)
    x[1, 64:] = np.linspace(-1, 1, 64)
    q = quantize_int8_cpu(x)
    assert np.all(q.codes[0] == 0) and np.all(q.scales[0] == 0) and q.norms[0] == 0
    assert np.all(q.codes[1, :64] == 0) and q.scales[1, 0] == 0 and q.scales[1, 1] == pytest.approx(1 / 127)
    assert np.all(np.isfinite(dequantize_int8_cpu(q)))


def test_empty_input_gives_empty_arrays_of_the_right_shape() -> None:
    q = quantize_int8_cpu(np.zeros((0, 512), np.float32))
    assert q.codes.shape == (0, 512) and q.scales.shape == (0, 8) and q.norms.shape == (0,)
    assert dequantize_int8_cpu(q).shape == (0, 512)


def test_float64_and_noncontiguous_inputs_are_accepted() -> None:
    x64 = clip_like_pairs(300, 512, seed=5)[0].astype(np.float64)
    q = quantize_int8_cpu(np.asfortranarray(x64))
    np.testing.assert_array_equal(q.codes, quantize_ref(x64.astype(np.float32)).codes)


def test_torch_input_gives_torch_output() -> None:
    x = torch.from_numpy(clip_like_pairs(100, 512, seed=6)[0])
    q = quantize_int8_cpu(x)
    assert isinstance(q.codes, torch.Tensor) and q.codes.dtype == torch.int8
    back = dequantize_int8_cpu(q)
    assert isinstance(back, torch.Tensor)
    assert float((back - x).abs().max()) < 0.01
    assert q.nbytes == 100 * (512 + 8 * 4 + 4)


@pytest.mark.parametrize(("dim", "block"), [(512, 48), (512, 8), (768, 512), (100, 64)])
def test_bad_block_sizes_are_refused(dim: int, block: int) -> None:
    with pytest.raises(ValueError, match="block_size"):
        check_block_size(dim, block)
    with pytest.raises(ValueError, match="block_size"):
        quantize_int8_cpu(np.ones((2, dim), np.float32), block)


def test_container_refuses_mismatched_arrays() -> None:
    codes = np.zeros((4, 128), np.int8)
    with pytest.raises(ValueError, match="scales"):
        QuantizedEmbeddings(codes, np.zeros((4, 3), np.float32), np.zeros(4, np.float32), 64)
    with pytest.raises(ValueError, match="must be float32"):
        QuantizedEmbeddings(codes, np.zeros((4, 2), np.float64), np.zeros(4, np.float32), 64)
    with pytest.raises(ValueError, match="2-D"):
        quantize_int8_cpu(np.zeros(128, np.float32))
