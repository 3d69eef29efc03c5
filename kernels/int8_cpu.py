"""CPU (Numba) kernels over block-wise int8 embeddings; Triton twins live in ``int8_triton``.

Every function takes NumPy arrays (or CPU torch tensors) and returns the same kind it was given.
Why Numba: NumPy would widen the int8 codes to a float32 or int32 temporary the size of the
float32 matrix, which is exactly the memory traffic the int8 format exists to avoid.

Concept scoring multiplies int8 codes by int8 concept codes with AVX-512 VNNI (``vpdpbusd``, 64
multiply-adds an instruction, ``audit.kernels.vnni``) where the CPU has it, applying each row
block's scale to the exact int32 block dot products; elsewhere it dequantizes tiles into a
single-threaded BLAS GEMM. Every kernel but that fallback is cached on disk (``cache=True``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

# Loads the BLAS that Numba's np.dot calls, so the thread limit below also reaches it.
import scipy.linalg.cython_blas  # noqa: F401
from numba import njit, prange
from threadpoolctl import ThreadpoolController

from audit.kernels import vnni
from audit.kernels.quantize import (
    CODE_MAX,
    DEFAULT_BLOCK_SIZE,
    ConceptScores,
    QuantizedEmbeddings,
    as_float32_matrix,
    check_block_size,
    check_top_k,
    is_torch,
    thresholds_for,
)

# Rows per concept-scoring tile: 256 x 512 float32 = 512 KiB stays in L2 for the BLAS call.
CONCEPT_TILE_ROWS = 256
TILES_PER_GRAB = 4
_BLAS = ThreadpoolController()


@njit(parallel=True, cache=True)
def _quantize(x: np.ndarray, bs: int, codes: np.ndarray, scales: np.ndarray, norms: np.ndarray) -> None:
    n, d = x.shape
    for i in prange(n):
        norm2 = np.float32(0.0)
        for j in range(d // bs):
            base = j * bs
            amax = np.float32(0.0)
            for t in range(bs):
                amax = max(amax, abs(x[i, base + t]))
            scale = amax / np.float32(CODE_MAX)
            inv = np.float32(CODE_MAX) / amax if amax > 0 else np.float32(0.0)
            sq = 0
            for t in range(bs):
                c = np.floor(x[i, base + t] * inv + np.float32(0.5))
                c = min(max(c, np.float32(-CODE_MAX)), np.float32(CODE_MAX))
                codes[i, base + t] = np.int8(c)
                sq += np.int32(c) * np.int32(c)
            scales[i, j] = scale
            norm2 += np.float32(sq) * scale * scale
        norms[i] = np.sqrt(norm2)


@njit(parallel=True, cache=True)
def _dequantize(codes: np.ndarray, scales: np.ndarray, bs: int, out: np.ndarray) -> None:
    n, d = codes.shape
    for i in prange(n):
        for j in range(d // bs):
            base = j * bs
            s = scales[i, j]
            for t in range(bs):  # `range(bs)` + offset (not range(lo, hi)) lets LLVM vectorise
                out[i, base + t] = np.float32(codes[i, base + t]) * s


@njit(parallel=True, cache=True)
def _row_norms(codes: np.ndarray, scales: np.ndarray, bs: int, out: np.ndarray) -> None:
    n, d = codes.shape
    for i in prange(n):
        norm2 = np.float32(0.0)
        for j in range(d // bs):
            base = j * bs
            sq = np.int32(0)
            for t in range(bs):
                c = np.int32(codes[i, base + t])
                sq += c * c
            norm2 += np.float32(sq) * scales[i, j] * scales[i, j]
        out[i] = np.sqrt(norm2)


@njit(parallel=True, cache=True)
def _paired_cosine(
    qa: np.ndarray,
    sa: np.ndarray,
    na: np.ndarray,
    qb: np.ndarray,
    sb: np.ndarray,
    nb: np.ndarray,
    bs: int,
    out: np.ndarray,
) -> None:
    n, d = qa.shape
    for i in prange(n):
        acc = np.float32(0.0)
        for j in range(d // bs):
            base = j * bs
            dot = np.int32(0)  # exact: 64 * 127^2 < 2^31 for any block size up to 2^17
            for t in range(bs):
                dot += np.int32(qa[i, base + t]) * np.int32(qb[i, base + t])
            acc += sa[i, j] * sb[i, j] * np.float32(dot)
        den = na[i] * nb[i]
        out[i] = acc / den if den > 0 else np.float32(0.0)


@njit(cache=True)
def _emit_tile(
    part: np.ndarray,
    i0: int,
    thr: np.ndarray,
    k: int,
    scores: np.ndarray,
    mask: np.ndarray,
    top_v: np.ndarray,
    top_i: np.ndarray,
    col: np.ndarray,
    bv: np.ndarray,
    bi: np.ndarray,
    xv: np.ndarray,
    xi: np.ndarray,
) -> None:
    """Scores, mask and top-k of one tile of rows (``part``: (m, K) scores) while it is hot."""
    m, num_concepts = part.shape
    for r in range(m):
        for c in range(num_concepts):
            v = part[r, c]
            scores[i0 + r, c] = v
            mask[i0 + r, c] = v >= thr[c]
            col[c, r] = v
    if k == 0:
        return
    # Top-k with the rows in vector lanes and no data-dependent branches: each concept's
    # score bubbles down k sorted slots by compare-and-select. Order: higher score first,
    # then the lower concept index, so ties come out as in a stable sort.
    for p in range(k):
        for r in range(m):
            bv[p, r] = -np.inf
            bi[p, r] = num_concepts
    for c in range(num_concepts):
        for r in range(m):
            xv[r] = col[c, r]
            xi[r] = c
        for p in range(k):
            for r in range(m):
                cur_v, cur_i, x_v, x_i = bv[p, r], bi[p, r], xv[r], xi[r]
                take = (x_v > cur_v) | ((x_v == cur_v) & (x_i < cur_i))
                bv[p, r] = x_v if take else cur_v
                bi[p, r] = x_i if take else cur_i
                xv[r] = cur_v if take else x_v
                xi[r] = cur_i if take else x_i
    for r in range(m):
        for p in range(k):
            top_v[i0 + r, p] = bv[p, r]
            top_i[i0 + r, p] = bi[p, r]


@njit(parallel=True)  # not cached: np.dot binds a BLAS function pointer, which Numba cannot cache
def _concept_scores_blas(
    codes: np.ndarray,
    scales: np.ndarray,
    norms: np.ndarray,
    bs: int,
    concepts_t: np.ndarray,
    thr: np.ndarray,
    k: int,
    tile: int,
    scores: np.ndarray,
    mask: np.ndarray,
    top_v: np.ndarray,
    top_i: np.ndarray,
) -> None:
    """Fallback without VNNI: each thread dequantizes an L2-sized tile (1/norm folded into the
    scale) and runs one single-threaded BLAS GEMM on it."""
    n, d = codes.shape
    num_concepts = concepts_t.shape[1]
    ntiles = (n + tile - 1) // tile
    # Tiles are handed out a few at a time, not split evenly up front, so a thread slowed by other
    # load is not waited on.
    threads = numba.get_num_threads()
    bufs = np.empty((threads, tile, d), np.float32)
    cols = np.empty((threads, num_concepts, tile), np.float32)  # the scores tile, transposed
    best_v = np.empty((threads, k, tile), np.float32)
    best_i = np.empty((threads, k, tile), np.int32)
    carry_v = np.empty((threads, tile), np.float32)
    carry_i = np.empty((threads, tile), np.int32)
    previous = numba.set_parallel_chunksize(TILES_PER_GRAB)
    for tix in prange(ntiles):
        tid = numba.get_thread_id()
        buf = bufs[tid]
        i0 = tix * tile
        m = min(tile, n - i0)
        for r in range(m):
            i = i0 + r
            inv = np.float32(1.0) / norms[i] if norms[i] > 0 else np.float32(0.0)
            for j in range(d // bs):
                base = j * bs
                s = scales[i, j] * inv
                for t in range(bs):
                    buf[r, base + t] = np.float32(codes[i, base + t]) * s
        part = np.dot(buf[:m], concepts_t)
        _emit_tile(part, i0, thr, k, scores, mask, top_v, top_i,
                   cols[tid], best_v[tid], best_i[tid], carry_v[tid], carry_i[tid])  # fmt: skip
    numba.set_parallel_chunksize(previous)


@njit(parallel=True, cache=True)
def _concept_scores_vnni(
    words: np.ndarray,
    scales: np.ndarray,
    p: np.ndarray,
    init: np.ndarray,
    cscale: np.ndarray,
    n: int,
    nb: int,
    kp: int,
    thr: np.ndarray,
    k: int,
    tile: int,
    scores: np.ndarray,
    mask: np.ndarray,
    top_v: np.ndarray,
    top_i: np.ndarray,
    threads: int,
) -> None:
    """int8 x int8 dot products with AVX-512 VNNI (``audit.kernels.vnni``): rows two at a time
    against up to 64 concepts per call, one tile of rows per task; scores, mask and top-k of the
    tile while it is hot. ``words``: the codes as uint32 (4 codes each); ``scales``: block scale
    / row norm, flat (n, nb); ``p``, ``init``, ``cscale``: the concepts (``_vnni_concepts``);
    ``threads``: Numba's thread count (per-thread scratch). Cached on disk: nothing in it binds a
    runtime pointer (the caller sets the chunk size, ``numba.get_num_threads`` is passed in)."""
    num_concepts = scores.shape[1]
    d4 = words.shape[0] // n if n else 0
    wpb = d4 // nb
    nvec = kp // vnni.LANES
    ntiles = (n + tile - 1) // tile
    bufs = np.empty((threads, tile * kp), np.float32)
    cols = np.empty((threads, num_concepts, tile), np.float32)
    best_v = np.empty((threads, k, tile), np.float32)
    best_i = np.empty((threads, k, tile), np.int32)
    carry_v = np.empty((threads, tile), np.float32)
    carry_i = np.empty((threads, tile), np.int32)
    for tix in prange(ntiles):
        tid = numba.get_thread_id()
        buf = bufs[tid]
        i0 = tix * tile
        m = min(tile, n - i0)
        for r in range(0, m, vnni.ROW_GROUP):
            row = i0 + r
            for v0 in range(0, nvec, vnni.MAX_VECTORS):
                nv = min(vnni.MAX_VECTORS, nvec - v0)
                args = (buf, r * kp + v0 * 16, kp, words, row * d4, d4, scales, row * nb, nb,
                        p, v0 * 64, kp * 4, init, cscale, v0 * 16, kp, nb, wpb)  # fmt: skip
                if r + 1 < m:
                    if nv == 4:
                        vnni.score_2x4(*args)
                    elif nv == 3:
                        vnni.score_2x3(*args)
                    elif nv == 2:
                        vnni.score_2x2(*args)
                    else:
                        vnni.score_2x1(*args)
                elif nv == 4:
                    vnni.score_1x4(*args)
                elif nv == 3:
                    vnni.score_1x3(*args)
                elif nv == 2:
                    vnni.score_1x2(*args)
                else:
                    vnni.score_1x1(*args)
        part = buf[: m * kp].reshape(m, kp)[:, :num_concepts]
        _emit_tile(part, i0, thr, k, scores, mask, top_v, top_i,
                   cols[tid], best_v[tid], best_i[tid], carry_v[tid], carry_i[tid])  # fmt: skip


def _vnni_concepts(unit_t: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The concepts as the VNNI kernel reads them: block-int8 codes of the (K, D) unit concepts,
    K padded to a multiple of 16 with zero rows, laid out (block, word, concept, 4 bytes); the
    accumulators' start ``-128 x block code sum`` (cancels the +128 offset of the row codes); and
    the concept block scales over the dequantized concept's norm (so each is a unit vector again),
    both (block, padded concepts). Returns (p, init, cscale, kp)."""
    d, num_concepts = unit_t.shape
    kp = -(-num_concepts // vnni.LANES) * vnni.LANES
    padded = np.zeros((kp, d), np.float32)
    padded[:num_concepts] = unit_t.T
    q = quantize_int8_cpu(padded, block_size)
    nb = d // block_size
    codes = q.codes.reshape(kp, nb, block_size // 4, 4)
    p = np.ascontiguousarray(codes.transpose(1, 2, 0, 3)).reshape(-1)
    init = np.ascontiguousarray((-128 * codes.sum(axis=(2, 3), dtype=np.int32)).T, np.int32).reshape(-1)
    inv = np.where(q.norms > 0, 1.0 / np.maximum(q.norms, 1e-30), 0.0).astype(np.float32)
    cscale = np.ascontiguousarray((q.scales * inv[:, None]).T, np.float32).reshape(-1)  # unit again
    return p, init, cscale, kp


def scored_concepts(concepts: Any, dim: int, block_size: int = DEFAULT_BLOCK_SIZE) -> np.ndarray:
    """(K, D) float32 unit vectors: the concepts exactly as concept scoring sees them. With VNNI,
    their block-int8 codes dequantized and renormalised (the kernel multiplies int8 by int8), which
    adds a quantization error of the same size as the rows' own (the error bound covers both)."""
    unit = _unit_concepts_t(concepts, dim).T
    if not vnni.has_vnni():
        return np.ascontiguousarray(unit)
    deq = dequantize_int8_cpu(quantize_int8_cpu(unit, block_size))
    return deq / np.maximum(np.linalg.norm(deq, axis=1, keepdims=True), 1e-30)


def concept_engine() -> str:
    """What concept scoring runs on this CPU (recorded by the benchmark)."""
    if vnni.has_vnni():
        return "avx512-vnni vpdpbusd on int8 codes x int8 concepts (Numba + LLVM intrinsic)"
    return "float32 BLAS sgemm on dequantized tiles (no AVX-512 VNNI on this CPU)"


def _numpy(q: QuantizedEmbeddings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(  # type: ignore[return-value]
        np.ascontiguousarray(a.detach().cpu().numpy() if is_torch(a) else a) for a in q.arrays
    )


def _like(template: Any, *arrays: np.ndarray) -> Any:
    """Hand results back as torch tensors when the caller gave torch tensors."""
    if not is_torch(template):
        return arrays if len(arrays) > 1 else arrays[0]
    import torch

    out = tuple(torch.from_numpy(a) for a in arrays)
    return out if len(out) > 1 else out[0]


def quantize_int8_cpu(x: Any, block_size: int = DEFAULT_BLOCK_SIZE) -> QuantizedEmbeddings:
    """Block-wise absmax int8 codes, float32 scales and dequantized row norms of an (N, D) matrix."""
    arr = as_float32_matrix(x, "embeddings")
    n, d = arr.shape
    nb = check_block_size(d, block_size)
    codes = np.empty((n, d), np.int8)
    scales = np.empty((n, nb), np.float32)
    norms = np.empty(n, np.float32)
    _quantize(arr, block_size, codes, scales, norms)
    return QuantizedEmbeddings(*_like(x, codes, scales, norms), block_size=block_size)


def dequantize_int8_cpu(q: QuantizedEmbeddings) -> Any:
    """The float32 (N, D) matrix the codes stand for."""
    codes, scales, _ = _numpy(q)
    out = np.empty(codes.shape, np.float32)
    _dequantize(codes, scales, q.block_size, out)
    return _like(q.codes, out)


def dequantized_norms_cpu(codes: np.ndarray, scales: np.ndarray, block_size: int) -> np.ndarray:
    """L2 norm of each dequantized row (what ``QuantizedEmbeddings.norms`` holds)."""
    check_block_size(codes.shape[1], block_size)
    out = np.empty(codes.shape[0], np.float32)
    _row_norms(np.ascontiguousarray(codes), np.ascontiguousarray(scales), block_size, out)
    return out


def paired_cosine_int8_cpu(a: QuantizedEmbeddings, b: QuantizedEmbeddings) -> Any:
    """cos(a[i], b[i]) for every row, from the codes by exact int32 dot products per block."""
    _check_pair(a, b)
    qa, sa, na = _numpy(a)
    qb, sb, nb = _numpy(b)
    out = np.empty(a.num_rows, np.float32)
    _paired_cosine(qa, sa, na, qb, sb, nb, a.block_size, out)
    return _like(a.codes, out)


def concept_scores_int8_cpu(
    x: QuantizedEmbeddings, concepts: Any, *, k: int, threshold: float | Any = 0.0
) -> ConceptScores:
    """Cosine of every row with every concept (float32 (K, D) or QuantizedEmbeddings), with
    ``mask = score >= threshold`` (scalar or per concept) and the top ``k`` per row."""
    unit_t = _unit_concepts_t(concepts, x.dim)
    num_concepts = unit_t.shape[1]
    k = check_top_k(k, num_concepts)
    codes, scales, norms = _numpy(x)
    n = x.num_rows
    scores = np.empty((n, num_concepts), np.float32)
    mask = np.empty((n, num_concepts), np.bool_)
    top_v = np.empty((n, k), np.float32)
    top_i = np.empty((n, k), np.int32)
    thr = thresholds_for(threshold, num_concepts)
    if n and vnni.has_vnni():
        p, init, cscale, kp = _vnni_concepts(unit_t, x.block_size)
        inv = np.where(norms > 0, np.float32(1.0) / np.maximum(norms, np.float32(1e-30)), np.float32(0.0))
        row_scales = np.ascontiguousarray(scales * inv[:, None], np.float32).reshape(-1)
        words = codes.reshape(-1).view(np.uint32)
        threads = numba.get_num_threads()
        with numba.parallel_chunksize(TILES_PER_GRAB):  # a few tiles per grab: no waiting on a slow thread
            _concept_scores_vnni(words, row_scales, p, init, cscale, n, scales.shape[1], kp, thr, k,
                                 CONCEPT_TILE_ROWS, scores, mask, top_v, top_i, threads)  # fmt: skip
    elif n:
        with _BLAS.limit(limits=1, user_api="blas"):  # the kernel's own threads run the GEMMs
            _concept_scores_blas(codes, scales, norms, x.block_size, unit_t, thr, k,
                                 CONCEPT_TILE_ROWS, scores, mask, top_v, top_i)  # fmt: skip
    return ConceptScores(*_like(x.codes, scores, mask, top_v, top_i))


def _unit_concepts_t(concepts: Any, dim: int) -> np.ndarray:
    """(D, K) float32 unit concept vectors, dequantized first when given as int8."""
    if isinstance(concepts, QuantizedEmbeddings):
        c = dequantize_int8_cpu(QuantizedEmbeddings(*_numpy(concepts), block_size=concepts.block_size))
    else:
        c = as_float32_matrix(concepts, "concepts")
    if c.shape[1] != dim or c.shape[0] == 0:
        raise ValueError(f"concepts must be (K >= 1, {dim}), got {c.shape}")
    norms = np.linalg.norm(c, axis=1, keepdims=True)
    return np.ascontiguousarray((c / np.maximum(norms, 1e-12)).T, dtype=np.float32)


def _check_pair(a: QuantizedEmbeddings, b: QuantizedEmbeddings) -> None:
    if a.codes.shape != b.codes.shape or a.block_size != b.block_size:
        raise ValueError(
            f"paired cosine needs equal shapes and block sizes, got {tuple(a.codes.shape)}/{a.block_size} "
            f"and {tuple(b.codes.shape)}/{b.block_size}"
        )
