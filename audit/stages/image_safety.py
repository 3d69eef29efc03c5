"""Image NSFW scores: open_nsfw on pixels, LAION's head on CLIP image embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audit.image_scorers import ClipNsfwScorer, OpenNsfwScorer
from audit.images import DecodedImage, as_pil
from audit.tables import scatter, set_columns

OUTPUT_COLUMNS = ("image_nsfw_prob", "clip_nsfw_prob")


@dataclass(frozen=True)
class ImageNsfwConfig:
    batch_size: int = 32


def score_image_nsfw(
    table: pa.Table, cfg: ImageNsfwConfig, *, model: OpenNsfwScorer, images: Mapping[int, DecodedImage]
) -> pa.Table:
    """Adds image_nsfw_prob for every decoded image; other rows get null."""
    idx = np.array(sorted(images), dtype=np.int64)
    parts = [
        model.score([as_pil(images[int(i)]) for i in idx[s : s + cfg.batch_size]])
        for s in range(0, len(idx), cfg.batch_size)
    ]
    values = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return set_columns(table, {"image_nsfw_prob": scatter(table.num_rows, idx, values, pa.float32())})


def score_clip_nsfw(table: pa.Table, *, model: ClipNsfwScorer) -> pa.Table:
    """Adds clip_nsfw_prob for every row with an image embedding (computed or precomputed)."""
    emb = table.column("image_embedding").to_pylist()
    idx = np.array([i for i, e in enumerate(emb) if e is not None], dtype=np.int64)
    vectors = np.asarray([emb[i] for i in idx], np.float32) if idx.size else np.zeros((0, 1), np.float32)
    return set_columns(
        table, {"clip_nsfw_prob": scatter(table.num_rows, idx, model.score(vectors), pa.float32())}
    )
