"""The sample audited from images and again from an exported precomputed-embedding copy of it:
the copy runs no CLIP inference on any row and gives the same flags up to the int8 error bound."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audit.export import export_embeddings
from audit.pipelines.audit_run import run_audit
from audit.rules import load_rules

pytestmark = pytest.mark.slow
INT8_BOUND = 0.003  # |cos_int8 - cos_fp32| at the 99.9th percentile (audit.kernels.quantize)
# Reasons that need pixels or image bytes, which a precomputed copy does not carry.
PIXEL_REASONS = {"nsfw-image"}


def _flags(run: Path) -> dict[str, set[str]]:
    t = pq.read_table(run / "flags.parquet")
    return {
        k: set(r) for k, r in zip(t.column("key").to_pylist(), t.column("reasons").to_pylist(), strict=True)
    }


def _similarity(run: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for path in (run / "scores").glob("*.parquet"):
        t = pq.read_table(path, columns=["key", "clip_similarity"])
        out.update({k: s for k, s in zip(t.column("key").to_pylist(), t.column("clip_similarity").to_pylist(),
                                         strict=True) if s is not None})  # fmt: skip
    return out


def test_precomputed_copy_gives_the_same_flags(sample_dir: Path, make_config, tmp_path: Path) -> None:
    known_bad = [str(sample_dir / "known_bad.csv")]
    images = tmp_path / "from-images"
    shards = [str(sample_dir / "parquet"), str(sample_dir / "webdataset")]
    run_audit(make_config(shards=shards, out=str(images), **{"images.known_bad_lists": known_bad}))
    copy = tmp_path / "copy"
    exported = export_embeddings(str(images), str(copy))
    assert exported > 40
    precomputed = tmp_path / "from-embeddings"
    summary = run_audit(
        make_config(shards=[str(copy)], out=str(precomputed), **{"images.known_bad_lists": known_bad})
    )
    assert set(summary.image_status) == {"precomputed"}  # no row went through the CLIP model
    a, b = _flags(images), _flags(precomputed)
    sim_a, sim_b = _similarity(images), _similarity(precomputed)
    thresholds = [
        c.value for r in load_rules("default").rules for c in r.conditions if c.score == "clip_similarity"
    ]
    for key in set(sim_a) & set(sim_b):
        assert abs(sim_a[key] - sim_b[key]) <= 2 * INT8_BOUND, key  # quantized twice: stored, then re-scored
    for key in set(a) | set(b):
        if key not in sim_b:
            continue  # not exported (quarantined, or no image)
        left, right = a.get(key, set()) - PIXEL_REASONS, b.get(key, set()) - PIXEL_REASONS
        near_threshold = any(abs(sim_a.get(key, 9) - t) <= 2 * INT8_BOUND for t in thresholds)
        if left != right and near_threshold:
            assert left ^ right <= {"image-text-mismatch"}, key
            continue
        if "known-bad-hash" in left and "known-bad-hash" not in right:
            # pHash matches need pixels; the SHA-256 match survives through the exported sha256 column
            assert key == "known-bad-phash"
            left = left - {"known-bad-hash"}
        assert left == right, key
