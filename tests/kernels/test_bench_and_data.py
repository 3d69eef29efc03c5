"""The benchmark's JSON (at a toy size; speed is judged at full size, never in tests) and its data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from audit.kernels.bench import main, topk_overlap
from audit.kernels.synthetic import clip_like_concepts, clip_like_pairs


def test_clip_like_pairs_are_unit_anisotropic_and_span_the_clip_range() -> None:
    a, b = clip_like_pairs(4000, 512, seed=2)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    cos = np.sum(a * b, axis=1)
    assert cos.min() > 0.099 and cos.max() < 0.501 and 0.28 < cos.mean() < 0.32
    # a few outlier dimensions ~10x the typical magnitude, as in real CLIP embeddings
    assert np.median(np.abs(a).max(axis=1)) > 6 * np.median(np.abs(a))
    np.testing.assert_array_equal(clip_like_pairs(100, 512, seed=2)[0], a[:100])  # reproducible
    assert not np.array_equal(clip_like_pairs(100, 512, seed=3)[0], a[:100])
    assert clip_like_concepts(8, 512).shape == (8, 512)


def test_topk_overlap_counts_shared_indices() -> None:
    assert topk_overlap(np.array([[0, 1], [2, 3]]), np.array([[1, 0], [2, 5]])) == 0.75


def test_bench_writes_ratios_and_a_verdict_per_target(tmp_path: Path) -> None:
    out = tmp_path / "k.json"
    assert main(["--out", str(out), "--rows", "3000", "--dim", "512", "--reps", "2", "--concepts", "16"]) == 0
    result = json.loads(out.read_text())
    assert set(result["targets"]) == {
        "cpu_paired_speedup",
        "cpu_concept_speedup",
        "int8_bytes_ratio",
        "paired_error_p999",
        "concept_error_p999",
        "concept_topk_overlap",
    }
    paired = result["cpu"]["paired_cosine"]
    assert paired["speedup"] == paired["float32_einsum"]["median_s"] / paired["int8"]["median_s"]
    assert len(paired["int8"]["times_s"]) == 2
    assert result["targets"]["int8_bytes_ratio"]["value"] == (512 + 8 * 4 + 4) / (512 * 4)
    assert result["targets"]["paired_error_p999"]["pass"] is True
    assert result["all_targets_pass"] == all(t["pass"] for t in result["targets"].values())
    assert result["config"]["rows"] == 3000 and "OPENBLAS_CORETYPE" in result["machine"]
