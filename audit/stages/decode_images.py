"""Decode every row's image bytes once; the image stages share the decoded pixels."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import pyarrow as pa

from audit.images import DecodedImage, DecodeFailure, decode_image
from audit.jpeg_batch import DecodeCounts, decode_jpeg_batch
from audit.tables import active_rows, quarantine, set_columns

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("image_status",)


@dataclass(frozen=True)
class DecodeImagesConfig:
    max_pixels: int = 89_478_485
    # None: PIL decodes every image. A torch device ("cuda"; "cpu" in tests): JPEGs are decoded in
    # batches by torchvision there, anything else (or anything it rejects) by PIL, image by image.
    jpeg_device: str | None = None


@functools.cache
def _say_decoder(jpeg_device: str | None) -> None:
    if jpeg_device is None:
        log.info("decode_images: PIL decodes every image")
    else:
        log.info("decode_images: JPEGs decoded by torchvision on %s; other images by PIL", jpeg_device)


def decode_images(
    table: pa.Table, cfg: DecodeImagesConfig, counts: DecodeCounts | None = None
) -> tuple[pa.Table, dict[int, DecodedImage]]:
    """Adds image_status (decoded | precomputed | absent); undecodable bytes go to quarantine.

    Returns the table and row index -> RGB image for the rows that decoded: a PIL image, or a
    ``TensorImage`` where torchvision decoded it. ``counts`` adds up images per decoder.
    """
    _say_decoder(cfg.jpeg_device)
    counts = counts if counts is not None else DecodeCounts()
    n = table.num_rows
    images = table.column("image").to_pylist()
    has_emb = [
        a is not None and b is not None
        for a, b in zip(
            table.column("image_embedding").to_pylist(),
            table.column("text_embedding").to_pylist(),
            strict=True,
        )
    ]
    status: list[str | None] = [None] * n
    todo: list[int] = []
    for i in active_rows(table):
        i = int(i)
        if images[i] is None:
            status[i] = "precomputed" if has_emb[i] else "absent"
        else:
            todo.append(i)
    blobs = [images[i] for i in todo]
    if cfg.jpeg_device is None:
        results = [decode_image(b, cfg.max_pixels) for b in blobs]
        counts.pil += len(blobs)
    else:
        results = decode_jpeg_batch(blobs, cfg.max_pixels, cfg.jpeg_device, counts)
    failures: dict[int, tuple[str, str]] = {}
    decoded: dict[int, DecodedImage] = {}
    for i, result in zip(todo, results, strict=True):
        if isinstance(result, DecodeFailure):
            failures[i] = (result.reason, result.detail)
        else:
            decoded[i] = result
            status[i] = "decoded"
    table = quarantine(table, failures)
    return set_columns(table, {"image_status": pa.array(status, pa.string())}), decoded
