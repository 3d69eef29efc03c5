"""Image decoding that survives web data: every failure becomes a quarantine reason, never an exception."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DecodeFailure:
    reason: str  # a QUARANTINE_REASONS code
    detail: str


@dataclass(eq=False)
class TensorImage:
    """An RGB image decoded by torchvision: CHW uint8 ``pixels`` on their device (the GPU on CUDA).

    CLIP takes the pixels as they are; scorers that need a PIL image (pHash, open_nsfw) call ``pil()``,
    which copies to the host once and keeps the result.
    """

    pixels: torch.Tensor
    _pil: Image.Image | None = field(default=None, init=False, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL's ``Image.size``."""
        return int(self.pixels.shape[2]), int(self.pixels.shape[1])

    def pil(self) -> Image.Image:
        if self._pil is None:
            hwc = self.pixels.permute(1, 2, 0).contiguous().cpu().numpy()
            self._pil = Image.fromarray(hwc)  # (H, W, 3) uint8 -> RGB
        return self._pil


# What the decode stage hands to the image stages.
DecodedImage: TypeAlias = Image.Image | TensorImage


def as_pil(im: DecodedImage) -> Image.Image:
    return im.pil() if isinstance(im, TensorImage) else im


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping everything to white
        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max() or 1.0
        im = Image.fromarray((arr * (255.0 / hi)).astype(np.uint8), mode="L")
    elif im.mode in ("P", "LA", "PA", "RGBA"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB")


def decode_image(data: bytes | None, max_pixels: int) -> Image.Image | DecodeFailure:
    """Decode to an RGB PIL image, EXIF orientation applied; or say why not."""
    if data is None:
        return DecodeFailure("image_missing", "no image bytes")
    if len(data) == 0:
        return DecodeFailure("image_empty", "zero-byte image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                return DecodeFailure("image_too_large", f"{w}x{h} exceeds {max_pixels} pixels")
            im.load()
        im = ImageOps.exif_transpose(im)
        return _to_rgb(im)
    except UnidentifiedImageError:
        return DecodeFailure("image_undecodable", f"not an image ({data[:16]!r})")
    except Image.DecompressionBombError as e:
        return DecodeFailure("image_too_large", str(e))
    except (OSError, SyntaxError, ValueError) as e:
        text = str(e)
        reason = (
            "image_truncated" if "truncated" in text or "broken data stream" in text else "image_undecodable"
        )
        return DecodeFailure(reason, text[:200])
