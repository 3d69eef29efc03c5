"""Batched JPEG decoding with torchvision (nvJPEG on CUDA), with a per-image fallback to PIL.

Only plain JPEGs go to torchvision: complete (ending in the EOI marker), YCbCr or greyscale, within
the pixel limit, all read from the header without decoding. Everything else, and every image
torchvision rejects, goes through ``audit.images.decode_image``, so each row gets the outcome the
PIL path gives it (an image or the same quarantine reason); decoded pixels may differ by rounding.
The same code runs with ``device="cpu"``, which is how the CPU tests exercise it.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from PIL import ExifTags, Image

from audit.images import DecodedImage, DecodeFailure, TensorImage, decode_image

if TYPE_CHECKING:
    import torch

JPEG_MAGIC = b"\xff\xd8\xff"
_EOI = b"\xff\xd9"
# Bounds one torchvision call (nvJPEG allocates every output of a call at once).
CHUNK_PIXELS = 64 * 2**20
CHUNK_IMAGES = 128
# Decoded pixels a call leaves on the GPU; the rest move to host memory, so a batch of huge images
# cannot exhaust the GPU (CLIP moves them back one batch at a time).
DEVICE_RESIDENT_BYTES = 4 * 2**30


@dataclass
class DecodeCounts:
    """Images per decoder, summed over the batches of a shard (``ShardRecord.image_decoders``)."""

    torchvision: int = 0
    pil: int = 0  # images PIL decoded or found undecodable (not plain JPEGs, or rejected below)
    torchvision_rejected: int = 0  # plain JPEGs torchvision failed on; counted in ``pil`` too

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if v}


@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    orientation: int  # EXIF orientation, 1 = as stored


def probe_jpeg(data: bytes, max_pixels: int) -> JpegHeader | None:
    """The header of a JPEG torchvision can decode as PIL would, or None: decode it with PIL."""
    if not data.startswith(JPEG_MAGIC) or not data.rstrip(b"\x00\r\n ").endswith(_EOI):
        return None  # not a JPEG, or truncated: PIL names the reason
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header only
                if im.format != "JPEG" or im.mode not in ("RGB", "L"):
                    return None  # CMYK/YCCK (Adobe inverts them), MPO, ...
                w, h = im.size
                orientation = int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # whatever PIL makes of it (a bomb, a broken header) is the PIL path's answer
        return None
    if w * h > max_pixels:
        return None  # decode_image quarantines it before decoding anything
    return JpegHeader(w, h, orientation)


def orient(pixels: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation to CHW pixels the way PIL's ``ImageOps.exif_transpose`` does.

    Done here rather than by torchvision's ``apply_exif_orientation``, which only works on the CPU.
    """
    import torch

    if orientation == 2:
        return pixels.flip(2)
    if orientation == 3:
        return pixels.flip(1, 2)
    if orientation == 4:
        return pixels.flip(1)
    if orientation == 5:
        return pixels.transpose(1, 2).contiguous()
    if orientation == 6:
        return torch.rot90(pixels, -1, (1, 2))
    if orientation == 7:
        return pixels.transpose(1, 2).flip(1, 2)
    if orientation == 8:
        return torch.rot90(pixels, 1, (1, 2))
    return pixels  # 1, or a value PIL ignores too


def _chunks(items: list[tuple[int, JpegHeader]]) -> Iterator[list[tuple[int, JpegHeader]]]:
    chunk: list[tuple[int, JpegHeader]] = []
    pixels = 0
    for item in items:
        n = item[1].width * item[1].height
        if chunk and (pixels + n > CHUNK_PIXELS or len(chunk) >= CHUNK_IMAGES):
            yield chunk
            chunk, pixels = [], 0
        chunk.append(item)
        pixels += n
    if chunk:
        yield chunk


def _decode_call(tensors: list[torch.Tensor], device: str) -> list[torch.Tensor]:
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    if device.startswith("cuda"):
        # nvJPEG's hardware path can write its outputs before work queued on the stream has run,
        # into memory that work still reads (pytorch/vision#9606): drain the stream first.
        torch.cuda.current_stream(torch.device(device)).synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to TorchCodec
        return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))


def _decode_chunk(blobs: list[bytes], device: str) -> list[torch.Tensor | None]:
    """Pixels per blob, None where torchvision fails; one bad image never sinks the others."""
    import torch

    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    try:
        return _decode_call(tensors, device)
    except Exception:  # a batched call returns nothing if one image fails: retry one by one
        pass
    out: list[torch.Tensor | None] = []
    for t in tensors:
        try:
            out.append(_decode_call([t], device)[0])
        except Exception:
            out.append(None)
    return out


def decode_jpeg_batch(
    blobs: Sequence[bytes | None], max_pixels: int, device: str, counts: DecodeCounts | None = None
) -> list[DecodedImage | DecodeFailure]:
    """Decode each blob to an RGB image (EXIF orientation applied) or say why not, as ``decode_image``.

    Plain JPEGs come back as ``TensorImage`` on ``device``, the others as PIL images.
    """
    counts = counts if counts is not None else DecodeCounts()
    out: list[DecodedImage | DecodeFailure | None] = [None] * len(blobs)
    plain: list[tuple[int, JpegHeader]] = []
    for i, data in enumerate(blobs):
        header = probe_jpeg(data, max_pixels) if data else None
        if header is None:
            out[i] = decode_image(data, max_pixels)
            counts.pil += 1
        else:
            plain.append((i, header))
    resident = 0
    for chunk in _chunks(plain):
        decoded = _decode_chunk([blobs[i] for i, _ in chunk], device)  # type: ignore[misc]
        for (i, header), pixels in zip(chunk, decoded, strict=True):
            if pixels is None or tuple(pixels.shape) != (3, header.height, header.width):
                out[i] = decode_image(blobs[i], max_pixels)
                counts.pil += 1
                counts.torchvision_rejected += 1
                continue
            pixels = orient(pixels, header.orientation)
            if pixels.device.type != "cpu":
                resident += pixels.numel()
                if resident > DEVICE_RESIDENT_BYTES:
                    pixels = pixels.cpu()
            out[i] = TensorImage(pixels)
            counts.torchvision += 1
    return out  # type: ignore[return-value]
