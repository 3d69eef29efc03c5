"""Decode every row's image bytes once; the image stages share the decoded pixels."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from PIL import Image

from audit.images import DecodeFailure, decode_image
from audit.tables import active_rows, quarantine, set_columns

OUTPUT_COLUMNS = ("image_status",)


@dataclass(frozen=True)
class DecodeImagesConfig:
    max_pixels: int = 89_478_485


def decode_images(table: pa.Table, cfg: DecodeImagesConfig) -> tuple[pa.Table, dict[int, Image.Image]]:
    """Adds image_status (decoded | precomputed | absent); undecodable bytes go to quarantine.

    Returns the table and row index -> RGB image for the rows that decoded.
    """
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
    failures: dict[int, tuple[str, str]] = {}
    decoded: dict[int, Image.Image] = {}
    for i in active_rows(table):
        i = int(i)
        if images[i] is None:
            status[i] = "precomputed" if has_emb[i] else "absent"
            continue
        result = decode_image(images[i], cfg.max_pixels)
        if isinstance(result, DecodeFailure):
            failures[i] = (result.reason, result.detail)
        else:
            decoded[i] = result
            status[i] = "decoded"
    table = quarantine(table, failures)
    return set_columns(table, {"image_status": pa.array(status, pa.string())}), decoded
