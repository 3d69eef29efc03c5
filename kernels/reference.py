"""Float32 NumPy references that the int8 kernels (CPU and Triton) are tested against."""

from __future__ import annotations

import numpy as np

from audit.kernels.quantize import (
    CODE_MAX,
    DEFAULT_BLOCK_SIZE,
    ConceptScores,
    QuantizedEmbeddings,
    as_float32_matrix,
    check_block_size,
    check_top_k,
    thresholds_for,
)
from audit.kernels.similarity import l2_normalize, paired_cosine_cpu

paired_cosine_ref = paired_cosine_cpu


def quantize_ref(x: np.ndarray, block_size: int = DEFAULT_BLOCK_SIZE) -> QuantizedEmbeddings:
    """Plain vectorised NumPy version of the block-wise absmax quantizer (same rounding)."""
    x = as_float32_matrix(x, "embeddings")
    n, d = x.shape
    nb = check_block_size(d, block_size)
    blocks = x.reshape(n, nb, block_size)
    amax = np.abs(blocks).max(axis=2)
    scales = amax / np.float32(CODE_MAX)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(CODE_MAX) / amax, np.float32(0)).astype(np.float32)
    codes = np.clip(np.floor(blocks * inv[:, :, None] + np.float32(0.5)), -CODE_MAX, CODE_MAX).astype(np.int8)
    sq = np.einsum("njb,njb->nj", codes.astype(np.int32), codes.astype(np.int32)).astype(np.float32)
    norms = np.sqrt(np.sum(sq * scales * scales, axis=1)).astype(np.float32)
    return QuantizedEmbeddings(codes.reshape(n, d), scales.astype(np.float32), norms, block_size)


def dequantize_ref(q: QuantizedEmbeddings) -> np.ndarray:
    n, d = q.codes.shape
    blocks = q.codes.reshape(n, -1, q.block_size).astype(np.float32) * q.scales[:, :, None]
    return blocks.reshape(n, d)


def concept_scores_ref(
    x: np.ndarray, concepts: np.ndarray, *, k: int, threshold: float | np.ndarray = 0.0
) -> ConceptScores:
    """Cosine of every row with every concept, in float32, then the mask and a stable top-k."""
    x = as_float32_matrix(x, "embeddings")
    concepts = as_float32_matrix(concepts, "concepts")
    num_concepts = concepts.shape[0]
    k = check_top_k(k, num_concepts)
    scores = (l2_normalize(x) @ l2_normalize(concepts).T).astype(np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int32)
    return ConceptScores(
        scores=scores,
        mask=scores >= thresholds_for(threshold, num_concepts),
        top_values=np.take_along_axis(scores, order, axis=1),
        top_indices=order,
    )
