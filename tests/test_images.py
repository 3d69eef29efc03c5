from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from audit.images import DecodeFailure, decode_image


def _png(mode: str, size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    if mode == "I;16":
        Image.fromarray((np.arange(size[0] * size[1]).reshape(size[1], size[0]) * 40).astype(np.uint16)).save(
            buf, "PNG"
        )
    else:
        Image.new(mode, size).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "LA", "I;16"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    im = decode_image(_png(mode), max_pixels=10_000)
    assert not isinstance(im, DecodeFailure)
    assert im.mode == "RGB" and im.size == (40, 30)


def test_sixteen_bit_greyscale_keeps_its_contrast() -> None:
    im = decode_image(_png("I;16"), max_pixels=10_000)
    arr = np.asarray(im)
    assert arr.min() == 0 and arr.max() == 255


def test_exif_orientation_is_applied() -> None:
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (60, 20)).save(buf, "JPEG", exif=exif)
    im = decode_image(buf.getvalue(), max_pixels=10_000)
    assert im.size == (20, 60)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, "image_missing"),
        (b"", "image_empty"),
        (b"<html>404</html>", "image_undecodable"),
    ],
)
def test_bad_bytes_get_a_reason(data: bytes | None, reason: str) -> None:
    result = decode_image(data, max_pixels=10_000)
    assert isinstance(result, DecodeFailure) and result.reason == reason


def test_truncated_jpeg_is_reported_as_truncated() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    result = decode_image(buf.getvalue()[: buf.tell() // 2], max_pixels=10_000)
    assert isinstance(result, DecodeFailure) and result.reason == "image_truncated"


def test_pixel_limit_stops_decompression_bombs_before_decoding() -> None:
    result = decode_image(_png("L", (200, 200)), max_pixels=100 * 100)
    assert isinstance(result, DecodeFailure) and result.reason == "image_too_large"
    assert "200x200" in result.detail
