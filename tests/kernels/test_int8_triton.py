"""Triton kernels: run through Triton's interpreter on CPU tensors here, compiled on a GPU when present.

Sizes stay small (the interpreter runs each program in Python); the CPU kernels, tested at scale
against float32, are the yardstick, and the error bound is checked against float32 too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import triton
from triton.runtime.interpreter import InterpretedFunction

import audit.kernels.int8_triton as tri
from audit.kernels.bench import topk_overlap
from audit.kernels.int8_cpu import (
    concept_scores_int8_cpu,
    dequantize_int8_cpu,
    paired_cosine_int8_cpu,
    quantize_int8_cpu,
)
from audit.kernels.reference import concept_scores_ref, paired_cosine_ref

ROWS = 150  # three programs of 64 rows, the last one partly masked
KERNELS = ("_quantize_kernel", "_dequantize_kernel", "_paired_cosine_kernel", "_concept_kernel")


@pytest.fixture(scope="module")
def small(
    pairs: tuple[np.ndarray, np.ndarray], concepts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return pairs[0][:ROWS], pairs[1][:ROWS], concepts[:40]  # 40 concepts: padded to a 64-wide tile


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the kernels compile instead")
def test_without_a_gpu_the_kernels_really_run_in_the_triton_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert tri.interpreting() and tri.kernel_device().type == "cpu"
    for name in KERNELS:
        assert isinstance(getattr(tri, name), InterpretedFunction), f"{name} is {type(getattr(tri, name))}"
    launches: list[str] = []
    launch = InterpretedFunction.__getitem__

    def spy(self: InterpretedFunction, grid: object) -> object:
        launches.append(self.fn.__name__)
        return launch(self, grid)

    monkeypatch.setattr(InterpretedFunction, "__getitem__", spy)
    x = torch.from_numpy(np.eye(64, 128, dtype=np.float32))
    q = tri.quantize_int8_cuda(x)
    assert q.codes.device.type == "cpu"
    tri.dequantize_int8_cuda(q)
    tri.paired_cosine_int8_cuda(q, q)
    tri.concept_scores_int8_cuda(q, x[:16], k=2)
    assert launches == ["_quantize_kernel", "_dequantize_kernel", "_paired_cosine_kernel", "_concept_kernel"]


def test_triton_quantize_matches_the_cpu_kernel(small: tuple[np.ndarray, ...]) -> None:
    x = small[0]
    got, cpu = tri.quantize_int8_cuda(x), quantize_int8_cpu(x)
    assert isinstance(got.codes, np.ndarray)  # NumPy in, NumPy out
    # Bit-equal in the interpreter; a GPU may fuse x * inv + 0.5 into one FMA and move a tie by one.
    assert np.abs(got.codes.astype(np.int16) - cpu.codes).max() <= 1
    assert np.mean(got.codes == cpu.codes) > 0.9999
    np.testing.assert_array_equal(got.scales, cpu.scales)
    np.testing.assert_allclose(got.norms, cpu.norms, rtol=1e-6)
    np.testing.assert_allclose(tri.dequantize_int8_cuda(cpu), dequantize_int8_cpu(cpu), rtol=1e-7)


def test_triton_paired_cosine_matches_cpu_and_float32(small: tuple[np.ndarray, ...]) -> None:
    a, b, _ = small
    qa, qb = quantize_int8_cpu(a), quantize_int8_cpu(b)
    got = tri.paired_cosine_int8_cuda(qa, qb)
    np.testing.assert_allclose(got, paired_cosine_int8_cpu(qa, qb), atol=1e-6)
    assert np.abs(got - paired_cosine_ref(a, b)).max() <= 0.003


def test_triton_concept_scores_match_cpu_and_float32(small: tuple[np.ndarray, ...]) -> None:
    a, _, concepts = small
    q = quantize_int8_cpu(a)
    thr = np.linspace(0.0, 0.2, len(concepts)).astype(np.float32)
    got = tri.concept_scores_int8_cuda(q, concepts, k=5, threshold=thr)
    cpu = concept_scores_int8_cpu(q, concepts, k=5, threshold=thr)
    ref = concept_scores_ref(a, concepts, k=5, threshold=thr)
    assert got.scores.shape == (ROWS, 40) and got.mask.dtype == np.bool_ and got.top_indices.dtype == np.int32
    # the CPU kernel quantizes the concepts to block-int8 (VNNI), Triton feeds them to tl.dot in
    # float16: each is within the documented 0.003 of float32, so they agree within that bound
    np.testing.assert_allclose(got.scores, cpu.scores, atol=0.003)
    assert np.abs(got.scores - ref.scores).max() <= 0.003
    np.testing.assert_array_equal(got.mask, got.scores >= thr)
    np.testing.assert_array_equal(np.take_along_axis(got.scores, got.top_indices, axis=1), got.top_values)
    assert np.all(np.diff(got.top_values, axis=1) <= 0)
    assert topk_overlap(got.top_indices, cpu.top_indices) >= 0.98
    assert topk_overlap(got.top_indices, ref.top_indices) >= 0.95


def test_triton_topk_ties_and_torch_round_trip() -> None:
    concepts = torch.eye(16, 64)
    concepts[3] = concepts[1]
    x = torch.zeros(2, 64)
    x[:, :4] = torch.tensor([0.1, 0.5, 0.2, 0.0])
    got = tri.concept_scores_int8_cuda(tri.quantize_int8_cuda(x), concepts, k=3)
    assert isinstance(got.top_indices, torch.Tensor) and got.top_indices.device == tri.kernel_device()
    assert got.top_indices.cpu().tolist() == [[1, 3, 2], [1, 3, 2]]


def test_triton_wrappers_validate_like_the_cpu_ones() -> None:
    x = np.ones((4, 128), np.float32)
    q = tri.quantize_int8_cuda(x)
    with pytest.raises(ValueError, match="top-k"):
        tri.concept_scores_int8_cuda(q, x[:2], k=3)
    with pytest.raises(ValueError, match="equal shapes"):
        tri.paired_cosine_int8_cuda(q, tri.quantize_int8_cuda(x[:2]))
    with pytest.raises(ValueError, match="block_size"):
        tri.quantize_int8_cuda(x, 48)
    empty = tri.quantize_int8_cuda(np.zeros((0, 128), np.float32))
    assert tri.paired_cosine_int8_cuda(empty, empty).shape == (0,)


@pytest.mark.gpu
def test_compiled_kernels_on_the_gpu_match_the_cpu_at_scale(
    pairs: tuple[np.ndarray, np.ndarray], concepts: np.ndarray
) -> None:
    assert not tri.interpreting() and isinstance(tri._paired_cosine_kernel, triton.runtime.JITFunction)
    a, b = (torch.from_numpy(x).cuda() for x in pairs)
    qa, qb = tri.quantize_int8_cuda(a), tri.quantize_int8_cuda(b)
    assert qa.codes.is_cuda
    cpu_a, cpu_b = quantize_int8_cpu(pairs[0]), quantize_int8_cpu(pairs[1])
    assert np.mean(qa.codes.cpu().numpy() == cpu_a.codes) > 0.9999
    cos = tri.paired_cosine_int8_cuda(qa, qb).cpu().numpy()
    np.testing.assert_allclose(cos, paired_cosine_int8_cpu(cpu_a, cpu_b), atol=1e-4)
    assert np.percentile(np.abs(cos - paired_cosine_ref(*pairs)), 99.9) <= 0.003
    got = tri.concept_scores_int8_cuda(qa, torch.from_numpy(concepts).cuda(), k=5, threshold=0.1)
    ref = concept_scores_ref(pairs[0], concepts, k=5, threshold=0.1)
    assert np.percentile(np.abs(got.scores.cpu().numpy() - ref.scores), 99.9) <= 0.003
    assert topk_overlap(got.top_indices.cpu().numpy(), ref.top_indices) >= 0.95
    np.testing.assert_allclose(tri.dequantize_int8_cuda(qa).cpu().numpy(), pairs[0], atol=2e-3)
