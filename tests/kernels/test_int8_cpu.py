"""CPU int8 paired cosine and concept scoring against their float32 references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.kernels import vnni
from audit.kernels.bench import topk_overlap
from audit.kernels.int8_cpu import (
    concept_scores_int8_cpu,
    dequantize_int8_cpu,
    paired_cosine_int8_cpu,
    quantize_int8_cpu,
    scored_concepts,
)
from audit.kernels.reference import concept_scores_ref, paired_cosine_ref

BOUND = 0.003  # |cos_int8 - cos_fp32| at the 99.9th percentile


def test_paired_cosine_error_bound_on_clip_like_pairs(pairs: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pairs
    ref = paired_cosine_ref(a, b)
    assert np.percentile(ref, 1) > 0.09 and np.percentile(ref, 99) < 0.51  # CLIP image-text range
    err = np.abs(paired_cosine_int8_cpu(quantize_int8_cpu(a), quantize_int8_cpu(b)) - ref)
    assert np.percentile(err, 99.9) <= BOUND
    assert err.max() <= 2 * BOUND


def test_paired_cosine_is_exactly_the_cosine_of_the_dequantized_rows(
    pairs: tuple[np.ndarray, np.ndarray],
) -> None:
    qa, qb = quantize_int8_cpu(pairs[0][:3000]), quantize_int8_cpu(pairs[1][:3000])
    expected = paired_cosine_ref(dequantize_int8_cpu(qa), dequantize_int8_cpu(qb))
    np.testing.assert_allclose(paired_cosine_int8_cpu(qa, qb), expected, atol=2e-6)


def test_paired_cosine_does_not_need_unit_inputs() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((500, 512)).astype(np.float32) * rng.uniform(0.1, 30, (500, 1)).astype(np.float32)
    b = a + rng.standard_normal((500, 512)).astype(np.float32) * 5
    got = paired_cosine_int8_cpu(quantize_int8_cpu(a), quantize_int8_cpu(b))
    assert np.max(np.abs(got - paired_cosine_ref(a, b))) < BOUND
    assert np.abs(paired_cosine_int8_cpu(quantize_int8_cpu(a), quantize_int8_cpu(-a)) + 1).max() < 1e-5


def test_paired_cosine_of_a_zero_row_is_zero() -> None:
    a = np.zeros((2, 64), np.float32)
    a[1] = 1
    out = paired_cosine_int8_cpu(quantize_int8_cpu(a), quantize_int8_cpu(np.ones((2, 64), np.float32)))
    assert out[0] == 0 and out[1] == pytest.approx(1.0)


def test_paired_cosine_refuses_mismatched_inputs() -> None:
    x = np.ones((4, 128), np.float32)
    with pytest.raises(ValueError, match="equal shapes"):
        paired_cosine_int8_cpu(quantize_int8_cpu(x), quantize_int8_cpu(x[:3]))
    with pytest.raises(ValueError, match="block sizes"):
        paired_cosine_int8_cpu(quantize_int8_cpu(x, 64), quantize_int8_cpu(x, 32))


def test_concept_scores_error_bound_and_topk_agreement(
    pairs: tuple[np.ndarray, np.ndarray], concepts: np.ndarray
) -> None:
    images = pairs[0]
    thr = np.quantile(images[:2000] @ concepts.T, 0.9, axis=0)  # per-concept thresholds, ~10% flagged
    got = concept_scores_int8_cpu(quantize_int8_cpu(images), concepts, k=5, threshold=thr)
    ref = concept_scores_ref(images, concepts, k=5, threshold=thr)
    err = np.abs(got.scores - ref.scores)
    assert np.percentile(err, 99.9) <= BOUND
    assert topk_overlap(got.top_indices, ref.top_indices) >= 0.95
    assert np.mean(got.mask == ref.mask) >= 0.99  # only scores within ~0.003 of a threshold may flip
    flipped = got.mask != ref.mask
    assert np.all(np.abs(ref.scores - thr)[flipped] <= np.abs(got.scores - ref.scores)[flipped] + 1e-6)


def test_concept_outputs_are_consistent_with_the_scores(
    pairs: tuple[np.ndarray, np.ndarray], concepts: np.ndarray
) -> None:
    got = concept_scores_int8_cpu(quantize_int8_cpu(pairs[0][:3000]), concepts, k=7, threshold=0.15)
    assert got.scores.shape == (3000, 64) and got.top_indices.shape == (3000, 7)
    assert got.scores.dtype == np.float32 and got.mask.dtype == np.bool_ and got.top_indices.dtype == np.int32
    np.testing.assert_array_equal(got.mask, got.scores >= np.float32(0.15))
    np.testing.assert_array_equal(np.take_along_axis(got.scores, got.top_indices, axis=1), got.top_values)
    assert np.all(np.diff(got.top_values, axis=1) <= 0)
    np.testing.assert_array_equal(got.top_values, -np.sort(-got.scores, axis=1)[:, :7])


def test_concept_scores_equal_float32_scoring_of_the_dequantized_rows(
    pairs: tuple[np.ndarray, np.ndarray], concepts: np.ndarray
) -> None:
    """Against the concepts as the kernel scores them: with VNNI, their own block-int8 codes."""
    q = quantize_int8_cpu(pairs[0][:3000])
    got = concept_scores_int8_cpu(q, concepts, k=5, threshold=0.1)
    seen = scored_concepts(concepts, q.dim, q.block_size)
    ref = concept_scores_ref(dequantize_int8_cpu(q), seen, k=5, threshold=0.1)
    np.testing.assert_allclose(got.scores, ref.scores, atol=2e-6)
    assert np.mean(got.top_indices == ref.top_indices) > 0.999


def test_topk_ties_keep_the_lower_concept_index_first() -> None:
    concepts = np.eye(4, 64, dtype=np.float32)
    concepts[3] = concepts[1]  # concepts 1 and 3 are the same vector
    x = np.zeros((1, 64), np.float32)
    x[0, :4] = [0.1, 0.5, 0.2, 0.0]
    got = concept_scores_int8_cpu(quantize_int8_cpu(x), concepts, k=3)
    np.testing.assert_array_equal(got.top_indices[0], [1, 3, 2])


def test_quantized_and_unnormalised_concepts_are_accepted(
    pairs: tuple[np.ndarray, np.ndarray], concepts: np.ndarray
) -> None:
    q = quantize_int8_cpu(pairs[0][:2000])
    base = concept_scores_int8_cpu(q, concepts, k=3)
    scaled = concept_scores_int8_cpu(q, concepts * 7.0, k=3)
    np.testing.assert_allclose(scaled.scores, base.scores, atol=1e-6)
    from_int8 = concept_scores_int8_cpu(q, quantize_int8_cpu(concepts), k=3)
    ref = concept_scores_ref(pairs[0][:2000], concepts, k=3)
    assert np.percentile(np.abs(from_int8.scores - ref.scores), 99.9) <= BOUND


def test_concept_scoring_validates_k_threshold_and_shapes(concepts: np.ndarray) -> None:
    q = quantize_int8_cpu(concepts[:10])
    with pytest.raises(ValueError, match="top-k"):
        concept_scores_int8_cpu(q, concepts, k=65)
    with pytest.raises(ValueError, match="threshold"):
        concept_scores_int8_cpu(q, concepts, k=1, threshold=[0.1, 0.2])
    with pytest.raises(ValueError, match="concepts must be"):
        concept_scores_int8_cpu(q, concepts[:, :64], k=1)
    none = concept_scores_int8_cpu(q, concepts, k=0)
    assert none.top_indices.shape == (10, 0) and none.scores.shape == (10, 64)


def test_concept_scoring_of_empty_and_torch_inputs(concepts: np.ndarray) -> None:
    empty = concept_scores_int8_cpu(
        quantize_int8_cpu(np.zeros((0, concepts.shape[1]), np.float32)), concepts, k=2
    )
    assert empty.scores.shape == (0, 64) and empty.top_indices.shape == (0, 2)
    q = quantize_int8_cpu(torch.from_numpy(concepts))
    got = concept_scores_int8_cpu(q, torch.from_numpy(concepts), k=1)
    assert isinstance(got.scores, torch.Tensor)
    np.testing.assert_array_equal(
        got.top_indices[:, 0].numpy(), np.arange(64)
    )  # each concept is its own best


@pytest.mark.skipif(not vnni.has_vnni(), reason="this CPU has no AVX-512 VNNI")
def test_vnni_and_blas_concept_kernels_agree_and_both_keep_the_bound(
    pairs: tuple[np.ndarray, np.ndarray], concepts: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row count parity and concept count that is not a multiple of 16 takes a tail path."""
    images = pairs[0][:4001]
    ref = concept_scores_ref(images, concepts[:37], k=4, threshold=0.2)
    q = quantize_int8_cpu(images)
    fast = concept_scores_int8_cpu(q, concepts[:37], k=4, threshold=0.2)
    monkeypatch.setattr(vnni, "has_vnni", lambda: False)
    slow = concept_scores_int8_cpu(q, concepts[:37], k=4, threshold=0.2)
    for got in (fast, slow):
        assert np.percentile(np.abs(got.scores - ref.scores), 99.9) <= BOUND
        assert topk_overlap(got.top_indices, ref.top_indices) >= 0.95
    assert np.abs(fast.scores - slow.scores).max() <= 2 * BOUND
    np.testing.assert_array_equal(fast.mask, fast.scores >= np.float32(0.2))


def test_vnni_kernel_is_cached_on_disk() -> None:
    """The concept kernel binds no runtime pointer, so Numba can cache it (no JIT per worker)."""
    from audit.kernels import int8_cpu

    assert int8_cpu._concept_scores_vnni._cache.__class__.__name__ == "FunctionCache"
