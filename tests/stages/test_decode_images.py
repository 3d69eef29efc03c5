from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from audit.clip_model import load_clip
from audit.config import ClipSettings
from audit.hashlists import KnownBadLists
from audit.image_scorers import OpenNsfwScorer
from audit.images import TensorImage, as_pil
from audit.jpeg_batch import DecodeCounts
from audit.readers import read_shard
from audit.sample import planted_cases
from audit.shards import discover_shards
from audit.stages.clip_similarity import ClipSimilarityConfig, score_clip_similarity
from audit.stages.decode_images import DecodeImagesConfig, decode_images
from audit.stages.image_safety import ImageNsfwConfig, score_image_nsfw
from audit.stages.known_bad import match_known_bad

# sample rows whose images torchvision does not take: PNGs and a CMYK JPEG
PIL_ONLY = {"mode-palette-png", "mode-rgba-png", "mode-cmyk-jpeg"}


def test_decode_images_keeps_rows_and_records_each_bad_image_with_its_reason(sample_dir: Path) -> None:
    planted = planted_cases()
    expected = {
        k: c.split(":", 1)[1]
        for c, keys in planted.items()
        if c.startswith(("malformed:image", "unscorable:image"))
        for k in keys
    }
    expected["known-bad-undecodable"] = "image_undecodable"
    seen: dict[str, str] = {}
    for spec in discover_shards([str(sample_dir / "parquet"), str(sample_dir / "webdataset")]):
        table = read_shard(spec).table
        out, images = decode_images(table, DecodeImagesConfig())
        assert out.num_rows == table.num_rows
        keys = out.column("key").to_pylist()
        reasons = out.column("image_problem").to_pylist()
        status = out.column("image_status").to_pylist()
        assert out.column("quarantine_reason").null_count == out.num_rows  # quarantine is decided later
        seen.update({k: r for k, r in zip(keys, reasons, strict=True) if r and r.startswith("image_")})
        assert {i for i, s in enumerate(status) if s == "decoded"} == set(images)
        assert all(im.mode == "RGB" for im in images.values())
    assert seen == expected


def test_pixel_limit_from_config_quarantines_large_images(sample_dir: Path) -> None:
    spec = discover_shards([str(sample_dir / "parquet" / "00000.parquet")])[0]
    out, images = decode_images(read_shard(spec).table, DecodeImagesConfig(max_pixels=100 * 100))
    reasons = set(out.column("image_problem").to_pylist())
    assert "image_too_large" in reasons and not images


def _by_key(table: pa.Table, column: str) -> dict[str, object]:
    return dict(zip(table.column("key").to_pylist(), table.column(column).to_pylist(), strict=True))


def test_torchvision_path_gives_every_row_the_pil_outcome(sample_dir: Path) -> None:
    """The same stage with JPEGs batched through torchvision (device="cpu" here, "cuda" in audits)."""
    counts = DecodeCounts()
    for spec in discover_shards([str(sample_dir / "parquet"), str(sample_dir / "webdataset")]):
        table = read_shard(spec).table
        pil_out, pil_images = decode_images(table, DecodeImagesConfig())
        tv_out, tv_images = decode_images(table, DecodeImagesConfig(jpeg_device="cpu"), counts)
        for column in ("image_status", "image_problem", "quarantine_reason", "quarantine_detail"):
            assert _by_key(tv_out, column) == _by_key(pil_out, column), column
        assert tv_images.keys() == pil_images.keys()
        keys = table.column("key").to_pylist()
        for i, im in tv_images.items():
            assert as_pil(im).size == pil_images[i].size, keys[i]
            assert np.array_equal(np.asarray(as_pil(im)), np.asarray(pil_images[i])), keys[i]
            # photos and shapes are plain JPEGs; the PNGs and the CMYK JPEG are left to PIL
            assert isinstance(im, TensorImage) == (keys[i] not in PIL_ONLY), keys[i]
    assert counts.torchvision > 0 and counts.torchvision_rejected == 0
    assert counts.pil >= len(PIL_ONLY)


def test_image_stages_take_torchvision_images_as_they_take_pil_images(
    sample_dir: Path, tiny_clip_dir: Path
) -> None:
    spec = discover_shards([str(sample_dir / "parquet" / "00000.parquet")])[0]
    table = read_shard(spec).table
    clip = load_clip(ClipSettings(model=f"local-dir:{tiny_clip_dir}", pretrained=None), "cpu")
    nsfw = OpenNsfwScorer()

    def image_scores(cfg: DecodeImagesConfig) -> pa.Table:
        out, images = decode_images(table, cfg)
        out = match_known_bad(out, lists=KnownBadLists((str(sample_dir / "known_bad.csv"),)), images=images)
        out = score_clip_similarity(out, ClipSimilarityConfig(batch_size=8), model=clip, images=images)
        return score_image_nsfw(out, ImageNsfwConfig(batch_size=8), model=nsfw, images=images)

    pil, tv = image_scores(DecodeImagesConfig()), image_scores(DecodeImagesConfig(jpeg_device="cpu"))
    for column in ("image_phash", "known_bad_match", "known_bad_list"):
        assert tv.column(column).to_pylist() == pil.column(column).to_pylist(), column
    assert any(tv.column("known_bad_match").to_pylist())  # a list entry matched through the new path
    np.testing.assert_allclose(
        tv.column("image_nsfw_prob").to_numpy(zero_copy_only=False),
        pil.column("image_nsfw_prob").to_numpy(zero_copy_only=False),
        atol=1e-6,
    )
    for a, b in zip(
        tv.column("image_embedding").to_pylist(), pil.column("image_embedding").to_pylist(), strict=True
    ):
        assert (a is None) == (b is None)
        if a is not None:  # CLIP preprocessed these on tensors: bicubic rounding apart, the same
            assert float(np.dot(a, b)) >= 0.999
