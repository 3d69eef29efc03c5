"""Thumbnails through audit.review.images on the audited sample run: grayscale, a page of rows at once,
the cache, and the render policy checked before any pixel."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from audit.render_policy import may_render
from audit.review import ImageUnavailableError, load_image, load_run, load_thumbnails
from audit.review.images import THUMBNAILS


@pytest.fixture
def run_dir(sample_run: Path, tmp_path: Path) -> Path:
    THUMBNAILS.clear()  # the cache is per process: start each test cold
    return Path(shutil.copytree(sample_run, tmp_path / "sample"))


def test_grayscale_thumbnails_have_no_colour(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    row = next(r for r in run.flags.to_pylist() if may_render(r) and r["shard_id"] == "00000")
    colour = Image.open(io.BytesIO(load_image(run, row["row_id"], blur=False)))
    gray = Image.open(io.BytesIO(load_image(run, row["row_id"], blur=False, grayscale=True)))
    assert colour.mode == "RGB" and gray.mode == "L" and gray.size == colour.size
    rgb = np.asarray(colour, dtype=np.float64)
    assert np.abs(rgb[..., 0] - rgb[..., 2]).mean() > 1  # the sample photo has colour to lose
    blurred = np.asarray(Image.open(io.BytesIO(load_image(run, row["row_id"], grayscale=True))), np.float64)
    sharp = np.asarray(gray, np.float64)
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.5 * np.abs(np.diff(sharp, axis=1)).mean()


def test_a_page_of_thumbnails_follows_the_render_policy_row_by_row(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    rows = run.flags.to_pylist()
    got = load_thumbnails(run, rows)
    assert set(got) == {r["row_id"] for r in rows}
    for r in rows:
        if not may_render(r):
            assert isinstance(got[r["row_id"]], ImageUnavailableError), r["row_id"]
            assert "never rendered" in str(got[r["row_id"]])
    shown = [r for r in rows if isinstance(got[r["row_id"]], bytes)]
    assert shown and all(may_render(r) for r in shown)
    for r in shown:  # the same bytes as one by one
        assert got[r["row_id"]] == load_image(run, r["row_id"])


def test_thumbnails_are_cached_and_an_unreadable_shard_says_so(run_dir: Path, tmp_path: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    record = next(s for s in manifest["shards"] if s["shard_id"] == "00000")
    own = Path(shutil.copy(record["path"], tmp_path / "00000.parquet"))  # same bytes, same sha256
    record["path"] = str(own)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    run = load_run(str(run_dir))
    rows = [r for r in run.flags.to_pylist() if may_render(r) and r["shard_id"] == "00000"]
    assert len(rows) >= 2
    first = load_image(run, rows[0]["row_id"])
    own.unlink()
    assert load_image(run, rows[0]["row_id"]) == first  # from the cache: the shard is not read again
    with pytest.raises(ImageUnavailableError, match="cannot be read") as err:  # not seen yet: needs the shard
        load_image(run, rows[1]["row_id"])
    assert "\n" not in str(err.value)


def test_prefetch_reads_the_next_rows_into_the_cache_in_the_background(run_dir: Path, tmp_path: Path) -> None:
    from audit.review.images import is_cached, prefetch

    manifest = json.loads((run_dir / "manifest.json").read_text())
    record = next(s for s in manifest["shards"] if s["shard_id"] == "00000")
    own = Path(shutil.copy(record["path"], tmp_path / "00000.parquet"))
    record["path"] = str(own)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    run = load_run(str(run_dir))
    rows = [r for r in run.flags.to_pylist() if may_render(r) and r["shard_id"] == "00000"]
    assert rows and not any(is_cached(run, r) for r in rows)
    prefetch(run, lambda: rows).result(timeout=120)  # the rows may be computed in the background too
    assert all(is_cached(run, r) for r in rows)
    own.unlink()
    for r in rows:  # shown without the shard
        assert Image.open(io.BytesIO(load_image(run, r["row_id"]))).format == "JPEG"
