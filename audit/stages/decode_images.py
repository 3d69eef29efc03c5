"""Decode every row's image bytes once; the image stages share the decoded pixels."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.images import DecodedImage, DecodeFailure, decode_image
from audit.jpeg_batch import DecodeCounts, decode_jpeg_batch
from audit.tables import active_rows, quarantine, scatter_array, set_columns

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
    """Adds image_status (decoded | precomputed | absent) for every row with bytes, quarantined or
    not, so hash lists see every decodable image; bytes that do not decode set ``image_problem``
    (status absent) and the row is audited text-only, or quarantined by ``quarantine_unscorable``
    when its caption is unusable too.

    Returns the table and row index -> RGB image for the rows that decoded: a PIL image, or a
    ``TensorImage`` where torchvision decoded it. ``counts`` adds up images per decoder.
    """
    _say_decoder(cfg.jpeg_device)
    counts = counts if counts is not None else DecodeCounts()
    n = table.num_rows
    # per row: bytes to decode (non-empty), and both precomputed embeddings (no Python lists of floats)
    lengths = pc.binary_length(table.column("image")).to_numpy(zero_copy_only=False)
    has_bytes = np.nan_to_num(np.asarray(lengths, np.float64), nan=0.0) > 0
    has_emb = np.logical_and(
        pc.is_valid(table.column("image_embedding")).to_numpy(zero_copy_only=False),
        pc.is_valid(table.column("text_embedding")).to_numpy(zero_copy_only=False),
    )
    active = np.zeros(n, bool)
    active[active_rows(table)] = True
    idle = ~has_bytes & active
    # rows without bytes (metadata, precomputed embeddings: most of a corpus) in Arrow; a Python
    # step only for rows with bytes to decode
    status = pc.if_else(
        pa.array(idle), pa.array(np.where(has_emb, "precomputed", "absent")), pa.scalar(None, pa.string())
    )
    todo = np.flatnonzero(has_bytes)
    if not todo.size:
        return set_columns(table, {"image_status": status}), {}
    at = pa.array(todo, pa.int64())
    blobs = table.column("image").take(at).to_pylist()
    if cfg.jpeg_device is None:
        results = [decode_image(b, cfg.max_pixels) for b in blobs]
        counts.pil += len(blobs)
    else:
        results = decode_jpeg_batch(blobs, cfg.max_pixels, cfg.jpeg_device, counts)
    problems = table.column("image_problem").take(at).to_pylist()
    details = table.column("quarantine_detail").take(at).to_pylist()
    decoding: list[str | None] = [None] * len(todo)  # the status of rows with bytes
    decoded: dict[int, DecodedImage] = {}
    for j, (i, result) in enumerate(zip(todo.tolist(), results, strict=True)):
        if isinstance(result, DecodeFailure):
            problems[j] = result.reason
            if active[i]:
                decoding[j] = "precomputed" if has_emb[i] else "absent"
                details[j] = result.detail  # kept for quarantine_unscorable's detail
        else:
            decoded[i] = result
            if active[i]:
                decoding[j] = "decoded"
    with_bytes = pa.array(has_bytes)

    def put(values: list, column: str | None) -> pa.Array:
        spread = scatter_array(n, todo, pa.array(values, pa.string()))
        base = status if column is None else table.column(column).combine_chunks().cast(pa.string())
        return pc.if_else(with_bytes, spread, base)

    return set_columns(
        table,
        {
            "image_status": put(decoding, None),
            "image_problem": put(problems, "image_problem"),
            "quarantine_detail": put(details, "quarantine_detail"),
        },
    ), decoded


def quarantine_unscorable(table: pa.Table) -> pa.Table:
    """Quarantine the rows with neither a usable image (decoded or precomputed) nor a usable caption.

    The reason is the image's problem when there were bytes that failed, else the caption's.
    """
    usable_image = pc.fill_null(
        pc.is_in(table.column("image_status"), pa.array(["decoded", "precomputed"])), False
    )
    unusable = pc.and_(pc.is_valid(table.column("caption_problem")), pc.invert(usable_image))
    hit = np.flatnonzero(unusable.to_numpy(zero_copy_only=False))
    hit = np.intersect1d(hit, active_rows(table))
    if not hit.size:
        return table
    at = pa.array(hit, pa.int64())
    caption = table.column("caption_problem").take(at).to_pylist()
    image = table.column("image_problem").take(at).to_pylist()
    details = table.column("quarantine_detail").take(at).to_pylist()
    reasons: dict[int, tuple[str, str]] = {}
    for j, i in enumerate(hit.tolist()):
        reason = image[j] or caption[j]
        detail = (
            "; ".join(d for d in (details[j], f"caption: {caption[j]}" if image[j] else None) if d) or None
        )
        reasons[i] = (reason, detail or "")
    return quarantine(table, reasons)
