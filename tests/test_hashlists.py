from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from audit.errors import ConfigError
from audit.hashlists import KnownBadLists, phash_hex


def _image(seed: int) -> Image.Image:
    im = Image.new("RGB", (128, 128), "white")
    ImageDraw.Draw(im).ellipse((10 + seed, 20, 100, 110 - seed), fill=(200, 30, 30))
    return im


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _write(tmp_path: Path, body: str) -> str:
    path = tmp_path / "list.csv"
    path.write_text("# comment\nalgorithm,hash,label\n" + body)
    return str(path)


def test_exact_sha256_and_md5_matches(tmp_path: Path) -> None:
    a, b = _jpeg(_image(0)), _jpeg(_image(5))
    lists = KnownBadLists(
        [_write(tmp_path, f"sha256,{hashlib.sha256(a).hexdigest()},x\nmd5,{hashlib.md5(b).hexdigest()},y\n")]
    )
    hit_a, _ = lists.match(a, None, _image(0))
    hit_b, _ = lists.match(b, None, _image(5))
    assert (hit_a.algorithm, hit_a.label, hit_a.distance) == ("sha256", "x", 0)
    assert (hit_b.algorithm, hit_b.label) == ("md5", "y")


def test_img2dataset_sha256_column_is_used_when_present(tmp_path: Path) -> None:
    lists = KnownBadLists([_write(tmp_path, "sha256," + "ab" * 32 + ",col\n")])
    hit, _ = lists.match(b"whatever bytes", "AB" * 32, None)
    assert hit is not None and hit.label == "col"


def test_perceptual_match_survives_reencoding_but_not_a_different_image(tmp_path: Path) -> None:
    listed = _image(0)
    lists = KnownBadLists([_write(tmp_path, f"phash,{phash_hex(listed)},p\n")], phash_max_distance=6)
    reencoded = Image.open(io.BytesIO(_jpeg(listed, quality=40))).convert("RGB")
    hit, ph = lists.match(_jpeg(listed, quality=40), None, reencoded)
    assert hit is not None and hit.algorithm == "phash" and hit.distance <= 6 and ph is not None
    other = Image.new("RGB", (128, 128), "white")
    ImageDraw.Draw(other).rectangle((0, 0, 60, 128), fill=(0, 0, 0))
    assert lists.match(_jpeg(other), None, other)[0] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("crc32,deadbeef,x\n", "unknown algorithm 'crc32'"),
        ("sha256,not-hex,x\n", "is not hexadecimal"),
    ],
)
def test_bad_list_lines_name_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"list\.csv:3: .*{message}"):
        KnownBadLists([_write(tmp_path, body)])


def test_missing_list_and_missing_header(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        KnownBadLists([str(tmp_path / "nope.csv")])
    bad = tmp_path / "h.csv"
    bad.write_text("sha256,abc\n")
    with pytest.raises(ConfigError, match="header 'algorithm,hash,label'"):
        KnownBadLists([str(bad)])
