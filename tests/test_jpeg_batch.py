"""Batched torchvision JPEG decoding with its per-image PIL fallback, checked against the PIL path on
real photographs. Every test runs on the CPU; the same tests run on CUDA where a GPU exists."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from audit.images import DecodeFailure, TensorImage, as_pil, decode_image
from audit.jpeg_batch import DecodeCounts, decode_jpeg_batch, probe_jpeg

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
LIMIT = 1_000_000


def _photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(data, name)())


def _jpeg(im: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **save)
    return buf.getvalue()


def _good_jpegs() -> dict[str, bytes]:
    return {
        "astronaut": _jpeg(_photo("astronaut"), quality=90),
        "coffee-progressive": _jpeg(_photo("coffee"), progressive=True),
        "chelsea-444": _jpeg(_photo("chelsea"), subsampling=0),
        "camera-grey": _jpeg(_photo("camera")),  # an "L" JPEG: RGB out, as PIL's path gives
        "rocket": _jpeg(_photo("rocket"), quality=75),
    }


def _bogus_huffman_table(jpeg: bytes) -> bytes:
    """A JPEG whose header reads fine but whose Huffman table no decoder accepts."""
    b = bytearray(jpeg)
    i = b.index(b"\xff\xc4")  # DHT: marker, length, class/id, then 16 code counts
    b[i + 5 : i + 21] = bytes([255] * 16)
    return bytes(b)


def _assert_same_pixels(got: Image.Image, want: Image.Image, device: str) -> None:
    assert got.mode == want.mode == "RGB" and got.size == want.size
    diff = np.abs(np.asarray(got, np.int16) - np.asarray(want, np.int16))
    # libjpeg-turbo on both sides on the CPU; nvJPEG's IDCT and upsampling round differently
    assert diff.mean() < (0.01 if device == "cpu" else 2.0)


@pytest.mark.parametrize("device", DEVICES)
def test_good_jpegs_decode_with_torchvision_like_pil(device: str) -> None:
    blobs = _good_jpegs()
    counts = DecodeCounts()
    out = decode_jpeg_batch(list(blobs.values()), LIMIT, device, counts)
    assert counts.as_dict() == {"torchvision": len(blobs)}
    for blob, im in zip(blobs.values(), out, strict=True):
        assert isinstance(im, TensorImage) and im.pixels.device.type == device
        assert im.pixels.dtype == torch.uint8 and im.pixels.shape[0] == 3
        want = decode_image(blob, LIMIT)
        assert isinstance(want, Image.Image)
        assert im.size == want.size
        _assert_same_pixels(im.pil(), want, device)
        assert im.pil() is im.pil()  # converted once, then shared by pHash and open_nsfw


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pil_applies_it(device: str, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    blob = _jpeg(_photo("rocket").crop((0, 0, 300, 200)), exif=exif)  # not square: rotations show
    (im,) = decode_jpeg_batch([blob], LIMIT, device)
    assert isinstance(im, TensorImage)
    want = decode_image(blob, LIMIT)
    assert isinstance(want, Image.Image)
    assert im.size == want.size == ((200, 300) if orientation >= 5 else (300, 200))
    _assert_same_pixels(im.pil(), want, device)


@pytest.mark.parametrize("device", DEVICES)
def test_every_other_image_gets_the_pil_outcome_and_the_good_ones_still_use_torchvision(device: str) -> None:
    good = _good_jpegs()
    chelsea = _photo("chelsea")
    png = io.BytesIO()
    chelsea.save(png, "PNG")
    jpeg = good["astronaut"]
    huge = _jpeg(Image.new("RGB", (1100, 1000), (90, 120, 150)))  # over LIMIT pixels
    others = {
        "cmyk": _jpeg(chelsea.convert("CMYK")),
        "png": png.getvalue(),
        "truncated": jpeg[: len(jpeg) // 2],
        "not-an-image": b"<html><body>404 Not Found</body></html>",
        "jpeg-magic-then-junk": b"\xff\xd8\xff" + b"junk" * 10 + b"\xff\xd9",
        "too-large": huge,
        "bogus-huffman": _bogus_huffman_table(good["coffee-progressive"]),
        "empty": b"",
        "missing": None,
    }
    # the bad ones sit between good ones, so a batched call that fails must not lose its neighbours
    names: list[str] = []
    for k in range(len(others)):
        names += [*list(others)[k : k + 1], *list(good)[k : k + 1]]
    blobs = {**good, **others}
    counts = DecodeCounts()
    out = dict(zip(names, decode_jpeg_batch([blobs[n] for n in names], LIMIT, device, counts), strict=True))

    for name in good:
        assert isinstance(out[name], TensorImage), name
    for name in others:
        want, got = decode_image(blobs[name], LIMIT), out[name]
        if isinstance(want, DecodeFailure):
            assert got == want, name  # the same quarantine reason and detail
        else:
            assert isinstance(got, Image.Image), name  # PIL decoded it
            _assert_same_pixels(got, want, "cpu")
    assert {n for n in others if isinstance(out[n], Image.Image)} == {"cmyk", "png"}
    assert out["too-large"] == DecodeFailure("image_too_large", f"1100x1000 exceeds {LIMIT} pixels")
    assert out["truncated"].reason == "image_truncated"  # type: ignore[union-attr]
    # only the JPEG with a readable header and a bad table got as far as torchvision
    assert counts.as_dict() == {"torchvision": len(good), "pil": len(others), "torchvision_rejected": 1}


def test_pixel_limit_is_checked_from_the_header_before_any_decoding() -> None:
    blob = bytearray(_jpeg(Image.new("RGB", (16, 16))))
    sof = blob.index(b"\xff\xc0")
    blob[sof + 5 : sof + 9] = (60_000).to_bytes(2, "big") * 2  # claims 60000 x 60000: 10 GB decoded
    blob = bytes(blob)
    assert probe_jpeg(blob, LIMIT) is None
    (result,) = decode_jpeg_batch([blob], LIMIT, "cpu")
    assert isinstance(result, DecodeFailure) and result.reason == "image_too_large"
    assert result == decode_image(blob, LIMIT)


def test_as_pil_passes_pil_images_through() -> None:
    im = _photo("coffee")
    assert as_pil(im) is im
