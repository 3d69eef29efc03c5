from __future__ import annotations

from pathlib import Path

from audit.readers import read_shard
from audit.sample import planted_cases
from audit.shards import discover_shards
from audit.stages.decode_images import DecodeImagesConfig, decode_images


def test_decode_images_keeps_rows_and_quarantines_each_bad_image_with_its_reason(sample_dir: Path) -> None:
    planted = planted_cases()
    expected = {
        k: c.split(":", 1)[1] for c, keys in planted.items() if c.startswith("malformed:image") for k in keys
    }
    seen: dict[str, str] = {}
    for spec in discover_shards([str(sample_dir / "parquet"), str(sample_dir / "webdataset")]):
        table = read_shard(spec).table
        out, images = decode_images(table, DecodeImagesConfig())
        assert out.num_rows == table.num_rows
        keys = out.column("key").to_pylist()
        reasons = out.column("quarantine_reason").to_pylist()
        status = out.column("image_status").to_pylist()
        seen.update({k: r for k, r in zip(keys, reasons, strict=True) if r and r.startswith("image_")})
        assert {i for i, s in enumerate(status) if s == "decoded"} == set(images)
        assert all(im.mode == "RGB" for im in images.values())
    assert seen == expected


def test_pixel_limit_from_config_quarantines_large_images(sample_dir: Path) -> None:
    spec = discover_shards([str(sample_dir / "parquet" / "00000.parquet")])[0]
    out, images = decode_images(read_shard(spec).table, DecodeImagesConfig(max_pixels=100 * 100))
    reasons = set(out.column("quarantine_reason").to_pylist())
    assert "image_too_large" in reasons and not images
