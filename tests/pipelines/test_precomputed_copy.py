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
# Scores read from pixels (open_nsfw, NudeNet, OCR text), which a precomputed copy does not carry.
PIXEL_SCORES = ("image_nsfw_prob", "nudenet_", "ocr_")


def _pixel_reasons() -> set[str]:
    """Reasons of the default rules that use a pixel score: those may differ between the two runs."""
    return {
        r.reason
        for r in load_rules("default").rules
        if any(c.score.startswith(PIXEL_SCORES) for c in r.conditions)
    }


PIXEL_REASONS = _pixel_reasons()


def _flags(run: Path, rows: dict[str, str] | None = None) -> dict[str, set[str]]:
    """Reasons per row id (``rows`` renames the copy's row ids to their source rows')."""
    t = pq.read_table(run / "flags.parquet")
    names = t.column("row_id").to_pylist()
    names = [rows[r] for r in names] if rows is not None else names
    return {r: set(why) for r, why in zip(names, t.column("reasons").to_pylist(), strict=True)}


def _similarity(run: Path, rows: dict[str, str] | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for path in (run / "scores").glob("*.parquet"):
        t = pq.read_table(path, columns=["row_id", "clip_similarity"])
        for r, s in zip(t.column("row_id").to_pylist(), t.column("clip_similarity").to_pylist(), strict=True):
            if s is not None:
                out[rows[r] if rows is not None else r] = s
    return out


def _source_rows(copy: Path) -> dict[str, str]:
    """The copy's row ids (metadata_N:<row>) -> the source run's row ids, from the exported metadata."""
    out = {}
    for path in (copy / "metadata").glob("metadata_*.parquet"):
        source = pq.read_table(path, columns=["source_row_id"]).column("source_row_id").to_pylist()
        out.update({f"{path.stem}:{i}": r for i, r in enumerate(source)})
    return out


def _keys(run: Path) -> dict[str, str]:
    out = {}
    for path in (run / "scores").glob("*.parquet"):
        t = pq.read_table(path, columns=["row_id", "key"])
        out.update(zip(t.column("row_id").to_pylist(), t.column("key").to_pylist(), strict=True))
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
    rows = _source_rows(copy)
    source_keys, copy_keys = _keys(images), _keys(precomputed)
    assert len(rows) == exported and set(copy_keys) <= set(rows)
    assert all(source_keys[rows[r]] == key for r, key in copy_keys.items())  # the dataset's own keys
    a, b = _flags(images), _flags(precomputed, rows)
    sim_a, sim_b = _similarity(images), _similarity(precomputed, rows)
    thresholds = [
        c.value for r in load_rules("default").rules for c in r.conditions if c.score == "clip_similarity"
    ]
    for row in set(sim_a) & set(sim_b):
        assert abs(sim_a[row] - sim_b[row]) <= 2 * INT8_BOUND, row  # quantized twice: stored, then re-scored
    for row in set(a) | set(b):
        if row not in sim_b:
            continue  # not exported (quarantined, or no image)
        # without pixels the copy can only lose a pixel-read reason, never gain one
        assert b.get(row, set()) & PIXEL_REASONS <= a.get(row, set()) & PIXEL_REASONS, row
        left, right = a.get(row, set()) - PIXEL_REASONS, b.get(row, set()) - PIXEL_REASONS
        near_threshold = any(abs(sim_a.get(row, 9) - t) <= 2 * INT8_BOUND for t in thresholds)
        if left != right and near_threshold:
            assert left ^ right <= {"image-text-mismatch"}, row
            continue
        if "known-bad-hash" in left and "known-bad-hash" not in right:
            # perceptual (pHash, PDQ) matches need pixels; the SHA-256 match survives through the
            # exported sha256 column
            assert source_keys[row] in ("known-bad-phash", "known-bad-pdq"), source_keys[row]
            left = left - {"known-bad-hash"}
        assert left == right, row
