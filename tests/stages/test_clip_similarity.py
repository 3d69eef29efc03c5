from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from audit.clip_model import ClipModel, load_clip
from audit.config import ClipSettings
from audit.readers import read_shard
from audit.shards import discover_shards
from audit.stages.clip_similarity import ClipSimilarityConfig, score_clip_similarity
from audit.stages.decode_images import DecodeImagesConfig, decode_images


def _scored(table: pa.Table, model: ClipModel, batch_size: int = 8) -> pa.Table:
    table, images = decode_images(table, DecodeImagesConfig())
    return score_clip_similarity(
        table, ClipSimilarityConfig(batch_size=batch_size), model=model, images=images
    )


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_dir: Path) -> ClipModel:
    return load_clip(ClipSettings(model=f"local-dir:{tiny_clip_dir}", pretrained=None), "cpu")


def test_score_clip_similarity_keeps_row_count_and_scores_only_pairs(
    sample_dir: Path, tiny_clip: ClipModel
) -> None:
    spec = discover_shards([str(sample_dir / "webdataset")])[0]
    table = read_shard(spec).table
    out = _scored(table, tiny_clip)
    assert out.num_rows == table.num_rows
    status = dict(zip(out.column("key").to_pylist(), out.column("image_status").to_pylist(), strict=True))
    reasons = dict(
        zip(out.column("key").to_pylist(), out.column("quarantine_reason").to_pylist(), strict=True)
    )
    sims = dict(zip(out.column("key").to_pylist(), out.column("clip_similarity").to_pylist(), strict=True))
    assert status["fetch-failed"] == "absent" and sims["fetch-failed"] is None
    captioned = dict(
        zip(out.column("key").to_pylist(), out.column("caption_problem").is_null().to_pylist(), strict=True)
    )
    decoded = [k for k, s in status.items() if s == "decoded"]
    pairs = [k for k in decoded if captioned[k]]
    assert pairs and all(-1.0 <= sims[k] <= 1.0 for k in pairs)
    # image-only rows (no usable caption) get an image embedding and no similarity
    image_only = [k for k in decoded if not captioned[k]]
    assert image_only and all(sims[k] is None for k in image_only)
    for key, reason in reasons.items():
        if reason is not None:
            assert sims[key] is None


def test_similarity_matches_cosine_of_the_models_own_embeddings(
    sample_dir: Path, tiny_clip: ClipModel
) -> None:
    spec = discover_shards([str(sample_dir / "parquet" / "00000.parquet")])[0]
    out = _scored(read_shard(spec).table, tiny_clip, batch_size=4)
    row = out.filter(pa.compute.equal(out.column("key"), "photo-astronaut"))
    img = np.asarray(row.column("image_embedding")[0].as_py())
    txt = tiny_clip.encode_texts([row.column("caption")[0].as_py()])[0]
    # computed from the block-int8 codes the run stores: within the kernels' documented bound
    assert row.column("clip_similarity")[0].as_py() == pytest.approx(float(img @ txt), abs=0.003)


def test_precomputed_embeddings_run_no_model(tiny_clip: ClipModel) -> None:
    rng = np.random.default_rng(1)
    img, txt = rng.normal(size=(3, 32)).astype(np.float32), rng.normal(size=(3, 32)).astype(np.float32)
    from audit.schemas import INGESTED_SCHEMA

    cols = {f.name: pa.nulls(3, f.type) for f in INGESTED_SCHEMA}
    cols.update(
        key=pa.array(["a", "b", "c"]),
        shard_id=pa.array(["s"] * 3),
        row_index=pa.array([0, 1, 2], pa.int64()),
        caption=pa.array(["x", "y", "z"]),
        image_embedding=pa.array(img.tolist(), pa.list_(pa.float32())),
        text_embedding=pa.array(txt.tolist(), pa.list_(pa.float32())),
    )
    table = pa.table([cols[f.name] for f in INGESTED_SCHEMA], schema=INGESTED_SCHEMA)

    class NoModel(ClipModel):
        def encode_images(self, images):  # type: ignore[override]
            raise AssertionError("image model ran for precomputed rows")

        def encode_texts(self, texts):  # type: ignore[override]
            raise AssertionError("text model ran for precomputed rows")

    guard = NoModel(tiny_clip.model, tiny_clip.preprocess, tiny_clip.tokenizer, "cpu", tiny_clip.record)
    out = _scored(table, guard)
    expected = (
        img / np.linalg.norm(img, axis=1, keepdims=True) * (txt / np.linalg.norm(txt, axis=1, keepdims=True))
    ).sum(1)
    np.testing.assert_allclose(out.column("clip_similarity").to_numpy(), expected, atol=0.003)
    assert out.column("image_status").to_pylist() == ["precomputed"] * 3
