from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from audit.clip_model import ClipModel, load_clip
from audit.config import ClipSettings
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


# --- extreme aspect ratios: decoded as they are, and CLIP's preprocessing of them is bounded ---

_EXTREME_CHAIN = """
import io, json, resource, sys
import numpy as np
from PIL import Image
from audit.clip_model import load_clip
from audit.config import ClipSettings
from audit.images import TensorImage, decode_image
from audit.jpeg_batch import decode_jpeg_batch

def encoded(w, h, fmt):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 90)).save(buf, fmt)
    return buf.getvalue()

clip = load_clip(ClipSettings(model=sys.argv[1], pretrained=None), "cpu")
clip.encode_images([decode_image(encoded(64, 48, "PNG"), 89_478_485)])  # model and allocator warm
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {"png_bytes": len(encoded(1, 20000, "PNG")), "images": []}
for w, h in [(1, 20000), (20000, 1)]:
    im = decode_image(encoded(w, h, "PNG"), 89_478_485)  # the PIL decoder
    (jpeg,) = decode_jpeg_batch([encoded(w, h, "JPEG")], 89_478_485, "cpu")  # the torchvision one
    assert isinstance(jpeg, TensorImage)
    for decoded in (im, jpeg):
        emb = clip.encode_images([decoded])
        out["images"].append([list(decoded.size), list(emb.shape), bool(np.isfinite(emb).all())])
out["rss_growth_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(out))
"""


@pytest.mark.slow
def test_extreme_aspect_images_decode_and_embed_in_bounded_memory(tiny_clip_dir: Path) -> None:
    """A ~160-byte 1x20000 PNG (and 20000x1, and the JPEGs, through both decoders) made open_clip's
    shortest-side resize build a 32x640000 image here (224x4480000, 5 GB, with a real CLIP)."""
    run = subprocess.run(
        [sys.executable, "-c", _EXTREME_CHAIN, f"local-dir:{tiny_clip_dir}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["png_bytes"] < 200
    dim = out["images"][0][1][1]
    assert out["images"] == [[[1, 20000], [1, dim], True]] * 2 + [[[20000, 1], [1, dim], True]] * 2
    assert out["rss_growth_mib"] < 32  # was over 300 MiB with this 32-pixel model


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_dir: Path) -> ClipModel:
    return load_clip(ClipSettings(model=f"local-dir:{tiny_clip_dir}", pretrained=None), "cpu")


@pytest.mark.parametrize(
    "size", [(512, 40), (40, 512), (300, 1), (1, 300), (2000, 97), (97, 2001), (3, 1000)]
)
def test_bounded_preprocessing_gives_the_pixels_of_the_whole_resize(tiny_clip: ClipModel, size) -> None:
    photo = Image.fromarray(data.astronaut()).resize(size)
    assert tiny_clip._resize_plan is not None and tiny_clip._resize_plan.too_large(*size)
    bounded, whole = tiny_clip.preprocess_image(photo), tiny_clip.preprocess(photo)
    level = 1 / 255 / 0.5  # one 8-bit step after the tiny model's normalisation (std 0.5)
    assert float((bounded - whole).abs().max()) <= level + 1e-6
    pixels = torch.from_numpy(np.array(photo)).permute(2, 0, 1).contiguous()
    assert float((tiny_clip.preprocess_pixels(pixels) - whole).abs().max()) <= level + 1e-6


@pytest.mark.parametrize("size", [(64, 64), (1000, 333), (333, 1000), (800, 101)])
def test_ordinary_aspect_ratios_keep_the_unchanged_preprocess(tiny_clip: ClipModel, size) -> None:
    photo = Image.fromarray(data.astronaut()).resize(size)
    assert not tiny_clip._resize_plan.too_large(*size)
    assert torch.equal(tiny_clip.preprocess_image(photo), tiny_clip.preprocess(photo))
