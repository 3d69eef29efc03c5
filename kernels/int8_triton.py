"""Triton (GPU) twins of ``int8_cpu``: same names with ``_cuda``, same signatures, same results.

Inputs may be NumPy arrays (copied to the GPU, results copied back as NumPy) or torch tensors
(results stay on the GPU as torch tensors). Under ``TRITON_INTERPRET=1`` (set before triton is
imported) the same kernels run in Triton's interpreter on CPU tensors; that is how the CPU-only
test suite exercises them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from audit.kernels.quantize import (
    DEFAULT_BLOCK_SIZE,
    ConceptScores,
    QuantizedEmbeddings,
    as_float32_matrix,
    check_block_size,
    check_top_k,
    is_torch,
    thresholds_for,
)

ROWS = 64  # rows per program; >= 16 as tl.dot needs


def interpreting() -> bool:
    """True when the kernels run in Triton's CPU interpreter.

    ``@triton.jit`` chose at import (from TRITON_INTERPRET), so ask the kernel, not the environment.
    """
    return isinstance(_paired_cosine_kernel, InterpretedFunction)


def kernel_device() -> torch.device:
    return torch.device("cpu" if interpreting() else "cuda")


@triton.jit
def _quantize_kernel(
    x_ptr, codes_ptr, scales_ptr, norms_ptr, n_rows, D, NB, ROWS: tl.constexpr, BS: tl.constexpr
):
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)  # int64: N * D may pass 2^31
    rmask = rows < n_rows
    cols = tl.arange(0, BS)
    norm2 = tl.zeros([ROWS], dtype=tl.float32)
    for j in range(NB):
        offs = rows[:, None] * D + j * BS + cols[None, :]
        x = tl.load(x_ptr + offs, mask=rmask[:, None], other=0.0)
        amax = tl.max(tl.abs(x), axis=1)
        # IEEE division and sqrt (not the fast approximations): scales bit-equal with the CPU kernel.
        # div_rn does not broadcast, hence the full-width constant.
        code_max = tl.full([ROWS], 127.0, tl.float32)
        scale = tl.div_rn(amax, code_max)
        inv = tl.where(amax > 0, tl.div_rn(code_max, tl.where(amax > 0, amax, 1.0)), 0.0)
        c = tl.floor(x * inv[:, None] + 0.5)
        c = tl.minimum(tl.maximum(c, -127.0), 127.0)
        tl.store(codes_ptr + offs, c.to(tl.int8), mask=rmask[:, None])
        tl.store(scales_ptr + rows * NB + j, scale, mask=rmask)
        norm2 += tl.sum(c * c, axis=1) * scale * scale  # float sums of squared codes: exact below 2^24
    tl.store(norms_ptr + rows, tl.sqrt_rn(norm2), mask=rmask)


@triton.jit
def _dequantize_kernel(codes_ptr, scales_ptr, out_ptr, n_rows, D, NB, ROWS: tl.constexpr, BS: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    rmask = rows < n_rows
    cols = tl.arange(0, BS)
    for j in range(NB):
        offs = rows[:, None] * D + j * BS + cols[None, :]
        q = tl.load(codes_ptr + offs, mask=rmask[:, None], other=0)
        s = tl.load(scales_ptr + rows * NB + j, mask=rmask, other=0.0)
        tl.store(out_ptr + offs, q.to(tl.float32) * s[:, None], mask=rmask[:, None])


@triton.jit
def _paired_cosine_kernel(
    qa_ptr,
    sa_ptr,
    na_ptr,
    qb_ptr,
    sb_ptr,
    nb_ptr,
    out_ptr,
    n_rows,
    D,
    NB,
    ROWS: tl.constexpr,
    BS: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    rmask = rows < n_rows
    cols = tl.arange(0, BS)
    acc = tl.zeros([ROWS], dtype=tl.float32)
    for j in range(NB):
        offs = rows[:, None] * D + j * BS + cols[None, :]
        qa = tl.load(qa_ptr + offs, mask=rmask[:, None], other=0).to(tl.int32)
        qb = tl.load(qb_ptr + offs, mask=rmask[:, None], other=0).to(tl.int32)
        dot = tl.sum(qa * qb, axis=1)  # exact int32 dot per block
        sa = tl.load(sa_ptr + rows * NB + j, mask=rmask, other=0.0)
        sb = tl.load(sb_ptr + rows * NB + j, mask=rmask, other=0.0)
        acc += dot.to(tl.float32) * sa * sb
    den = tl.load(na_ptr + rows, mask=rmask, other=0.0) * tl.load(nb_ptr + rows, mask=rmask, other=0.0)
    out = tl.where(den > 0, tl.div_rn(acc, tl.where(den > 0, den, 1.0)), 0.0)
    tl.store(out_ptr + rows, out, mask=rmask)


@triton.jit
def _concept_kernel(
    codes_ptr,
    scales_ptr,
    norms_ptr,
    ct_ptr,
    thr_ptr,
    scores_ptr,
    mask_ptr,
    topv_ptr,
    topi_ptr,
    n_rows,
    D,
    NB,
    K,
    ROWS: tl.constexpr,
    BS: tl.constexpr,
    KP: tl.constexpr,
    TOPK: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    rmask = rows < n_rows
    cols = tl.arange(0, BS)
    kcols = tl.arange(0, KP)
    acc = tl.zeros([ROWS, KP], dtype=tl.float32)
    for j in range(NB):
        # Dequantization fused into the GEMM: int8 codes are exact in float16, and the block
        # scale multiplies the (ROWS, KP) partial product instead of every element.
        q = tl.load(codes_ptr + rows[:, None] * D + j * BS + cols[None, :], mask=rmask[:, None], other=0)
        c = tl.load(ct_ptr + (j * BS + cols)[:, None] * KP + kcols[None, :])
        part = tl.dot(q.to(tl.float16), c, out_dtype=tl.float32)
        s = tl.load(scales_ptr + rows * NB + j, mask=rmask, other=0.0)
        acc += part * s[:, None]
    norm = tl.load(norms_ptr + rows, mask=rmask, other=0.0)
    one = tl.full([ROWS], 1.0, tl.float32)
    acc = acc * tl.where(norm > 0, tl.div_rn(one, tl.where(norm > 0, norm, one)), 0.0)[:, None]
    kmask = kcols < K
    out_mask = rmask[:, None] & kmask[None, :]
    out_offs = rows[:, None] * K + kcols[None, :]
    tl.store(scores_ptr + out_offs, acc, mask=out_mask)
    thr = tl.load(thr_ptr + kcols)
    tl.store(mask_ptr + out_offs, (acc >= thr[None, :]).to(tl.int8), mask=out_mask)
    work = tl.where(kmask[None, :], acc, float("-inf"))
    for t in tl.static_range(TOPK):  # k rounds of max + argmax (ties: lowest index) on the hot tile
        best = tl.max(work, axis=1)
        arg = tl.argmax(work, axis=1)
        tl.store(topv_ptr + rows * TOPK + t, best, mask=rmask)
        tl.store(topi_ptr + rows * TOPK + t, arg.to(tl.int32), mask=rmask)
        work = tl.where(kcols[None, :] == arg[:, None], float("-inf"), work)


def _to_device(x: Any, dtype: torch.dtype) -> torch.Tensor:
    t = x if is_torch(x) else torch.from_numpy(np.ascontiguousarray(x))
    return t.to(device=kernel_device(), dtype=dtype).contiguous()


def _back(template: Any, *tensors: torch.Tensor) -> Any:
    """NumPy in -> NumPy out; torch in -> torch tensors left on the kernel's device."""
    out = tuple(tensors) if is_torch(template) else tuple(t.cpu().numpy() for t in tensors)
    return out if len(out) > 1 else out[0]


def _device_arrays(q: QuantizedEmbeddings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        _to_device(q.codes, torch.int8),
        _to_device(q.scales, torch.float32),
        _to_device(q.norms, torch.float32),
    )


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, ROWS),)


def quantize_int8_cuda(x: Any, block_size: int = DEFAULT_BLOCK_SIZE) -> QuantizedEmbeddings:
    """Block-wise absmax int8 codes, float32 scales and dequantized row norms of an (N, D) matrix."""
    xt = _to_device(x if is_torch(x) else as_float32_matrix(x, "embeddings"), torch.float32)
    if xt.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D (rows, dim) matrix, got shape {tuple(xt.shape)}")
    n, d = xt.shape
    nb = check_block_size(d, block_size)
    codes = torch.empty((n, d), dtype=torch.int8, device=xt.device)
    scales = torch.empty((n, nb), dtype=torch.float32, device=xt.device)
    norms = torch.empty((n,), dtype=torch.float32, device=xt.device)
    if n:
        _quantize_kernel[_grid(n)](xt, codes, scales, norms, n, d, nb, ROWS=ROWS, BS=block_size)
    return QuantizedEmbeddings(*_back(x, codes, scales, norms), block_size=block_size)


def dequantize_int8_cuda(q: QuantizedEmbeddings) -> Any:
    """The float32 (N, D) matrix the codes stand for."""
    codes, scales, _ = _device_arrays(q)
    out = torch.empty(codes.shape, dtype=torch.float32, device=codes.device)
    if q.num_rows:
        _dequantize_kernel[_grid(q.num_rows)](
            codes, scales, out, q.num_rows, q.dim, scales.shape[1], ROWS=ROWS, BS=q.block_size
        )
    return _back(q.codes, out)


def paired_cosine_int8_cuda(a: QuantizedEmbeddings, b: QuantizedEmbeddings) -> Any:
    """cos(a[i], b[i]) for every row, from the codes by exact int32 dot products per block."""
    if a.codes.shape != b.codes.shape or a.block_size != b.block_size:
        raise ValueError(
            f"paired cosine needs equal shapes and block sizes, got {tuple(a.codes.shape)}/{a.block_size} "
            f"and {tuple(b.codes.shape)}/{b.block_size}"
        )
    qa, sa, na = _device_arrays(a)
    qb, sb, nb = _device_arrays(b)
    out = torch.empty((a.num_rows,), dtype=torch.float32, device=qa.device)
    if a.num_rows:
        _paired_cosine_kernel[_grid(a.num_rows)](
            qa, sa, na, qb, sb, nb, out, a.num_rows, a.dim, sa.shape[1], ROWS=ROWS, BS=a.block_size
        )
    return _back(a.codes, out)


def concept_scores_int8_cuda(
    x: QuantizedEmbeddings, concepts: Any, *, k: int, threshold: float | Any = 0.0
) -> ConceptScores:
    """Cosine of every row with every concept (float32 (K, D) or QuantizedEmbeddings), with
    ``mask = score >= threshold`` (scalar or per concept) and the top ``k`` per row."""
    if isinstance(concepts, QuantizedEmbeddings):
        concepts = dequantize_int8_cuda(concepts)
    c = _to_device(concepts, torch.float32)
    if c.ndim != 2 or c.shape[1] != x.dim or c.shape[0] == 0:
        raise ValueError(f"concepts must be (K >= 1, {x.dim}), got {tuple(c.shape)}")
    num_concepts = c.shape[0]
    k = check_top_k(k, num_concepts)
    kp = max(16, triton.next_power_of_2(num_concepts))
    unit = c / c.norm(dim=1, keepdim=True).clamp_min(1e-12)
    ct = torch.zeros((x.dim, kp), dtype=torch.float16, device=c.device)  # padded concepts score 0
    ct[:, :num_concepts] = unit.T.to(torch.float16)
    thr = torch.full((kp,), float("inf"), dtype=torch.float32, device=c.device)
    thr[:num_concepts] = torch.from_numpy(thresholds_for(threshold, num_concepts)).to(c.device)
    codes, scales, norms = _device_arrays(x)
    n = x.num_rows
    scores = torch.empty((n, num_concepts), dtype=torch.float32, device=c.device)
    mask = torch.empty((n, num_concepts), dtype=torch.int8, device=c.device)
    top_v = torch.empty((n, k), dtype=torch.float32, device=c.device)
    top_i = torch.empty((n, k), dtype=torch.int32, device=c.device)
    if n:
        _concept_kernel[_grid(n)](
            codes,
            scales,
            norms,
            ct,
            thr,
            scores,
            mask,
            top_v,
            top_i,
            n,
            x.dim,
            scales.shape[1],
            num_concepts,
            ROWS=ROWS,
            BS=x.block_size,
            KP=kp,
            TOPK=k,
        )
    return ConceptScores(*_back(x.codes, scores, mask.bool(), top_v, top_i))
