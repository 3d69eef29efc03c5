"""CLIP image and text embeddings and their cosine similarity, per image-text pair."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audit.clip_model import ClipModel
from audit.images import DecodeFailure, decode_image
from audit.kernels.similarity import l2_normalize, paired_cosine_cpu
from audit.tables import active_rows, quarantine, scatter, set_columns

OUTPUT_COLUMNS = ("image_status", "clip_similarity", "image_embedding", "text_embedding")


@dataclass(frozen=True)
class ClipSimilarityConfig:
    batch_size: int = 32
    max_pixels: int = 89_478_485


def _embedding_column(n: int, idx: np.ndarray, emb: np.ndarray) -> pa.Array:
    rows: list[list[float] | None] = [None] * n
    for j, i in enumerate(idx):
        rows[i] = emb[j]
    return pa.array([r.tolist() if r is not None else None for r in rows], pa.list_(pa.float32()))


def _batched(model_fn, items: list, batch_size: int) -> np.ndarray:
    parts = [model_fn(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def score_clip_similarity(table: pa.Table, cfg: ClipSimilarityConfig, *, model: ClipModel) -> pa.Table:
    """Adds image_status, clip_similarity and both embeddings; undecodable images are quarantined.

    Rows that already carry both embeddings (clip-retrieval input) run no model.
    """
    n = table.num_rows
    active = active_rows(table)
    images = table.column("image").to_pylist()
    pre_img = table.column("image_embedding").to_pylist()
    pre_txt = table.column("text_embedding").to_pylist()
    captions = table.column("caption").to_pylist()

    status: list[str | None] = [None] * n
    failures: dict[int, tuple[str, str]] = {}
    decoded: dict[int, object] = {}
    for i in active:
        if pre_img[i] is not None and pre_txt[i] is not None:
            status[i] = "precomputed"
        elif images[i] is None:
            status[i] = "absent"
        else:
            result = decode_image(images[i], cfg.max_pixels)
            if isinstance(result, DecodeFailure):
                failures[int(i)] = (result.reason, result.detail)
            else:
                decoded[int(i)] = result
                status[i] = "decoded"
    table = quarantine(table, failures)

    pre_idx = np.array([i for i in active if status[i] == "precomputed"], dtype=np.int64)
    img_idx = np.array(sorted(decoded), dtype=np.int64)
    txt_idx = np.array([i for i in active if status[i] in ("decoded", "absent")], dtype=np.int64)

    img_emb = _batched(model.encode_images, [decoded[i] for i in img_idx], cfg.batch_size)
    txt_emb = _batched(model.encode_texts, [captions[i] for i in txt_idx], cfg.batch_size)
    if pre_idx.size:
        pre_i = l2_normalize(np.asarray([pre_img[i] for i in pre_idx], np.float32))
        pre_t = l2_normalize(np.asarray([pre_txt[i] for i in pre_idx], np.float32))
    else:
        pre_i = pre_t = np.zeros((0, 0), np.float32)

    # similarity exists where both sides exist: decoded images and precomputed pairs
    txt_pos = {int(i): j for j, i in enumerate(txt_idx)}
    paired_txt = txt_emb[[txt_pos[int(i)] for i in img_idx]] if img_idx.size else img_emb
    sims = np.concatenate(
        [
            paired_cosine_cpu(img_emb, paired_txt) if img_idx.size else np.zeros(0, np.float32),
            paired_cosine_cpu(pre_i, pre_t) if pre_idx.size else np.zeros(0, np.float32),
        ]
    )
    sim_idx = np.concatenate([img_idx, pre_idx])

    all_img_idx = np.concatenate([img_idx, pre_idx])
    all_img = np.concatenate([x for x in (img_emb, pre_i) if x.size]) if all_img_idx.size else img_emb
    all_txt_idx = np.concatenate([txt_idx, pre_idx])
    all_txt = np.concatenate([x for x in (txt_emb, pre_t) if x.size]) if all_txt_idx.size else txt_emb
    return set_columns(
        table,
        {
            "image_status": pa.array(status, pa.string()),
            "clip_similarity": scatter(n, sim_idx, sims.astype(np.float32), pa.float32()),
            "image_embedding": _embedding_column(n, all_img_idx, all_img),
            "text_embedding": _embedding_column(n, all_txt_idx, all_txt),
        },
    )
