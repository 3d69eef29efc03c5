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
    status = np.full(n, None, dtype=object)
    idle = ~has_bytes & active
    status[idle] = np.where(has_emb[idle], "precomputed", "absent")
    problems = table.column("image_problem").to_pylist()
    todo = np.flatnonzero(has_bytes).tolist()
    blobs = table.column("image").take(pa.array(todo, pa.int64())).to_pylist() if todo else []
    if cfg.jpeg_device is None:
        results = [decode_image(b, cfg.max_pixels) for b in blobs]
        counts.pil += len(blobs)
    else:
        results = decode_jpeg_batch(blobs, cfg.max_pixels, cfg.jpeg_device, counts)
    details = table.column("quarantine_detail").to_pylist()
    decoded: dict[int, DecodedImage] = {}
    for i, result in zip(todo, results, strict=True):
        if isinstance(result, DecodeFailure):
            problems[i] = result.reason
            if active[i]:
                status[i] = "precomputed" if has_emb[i] else "absent"
                details[i] = result.detail  # kept for quarantine_unscorable's detail
        else:
            decoded[i] = result
            if active[i]:
                status[i] = "decoded"
    return set_columns(
        table,
        {
            "image_status": pa.array(status.tolist(), pa.string()),
            "image_problem": pa.array(problems, pa.string()),
            "quarantine_detail": pa.array(details, pa.string()),
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
