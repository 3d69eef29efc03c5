"""CLIP image and text embeddings and their cosine similarity, per image-text pair."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audit.clip_model import ClipModel
from audit.embedding_store import block_size_for
from audit.images import DecodedImage
from audit.kernels.dispatch import get_kernel
from audit.kernels.similarity import l2_normalize
from audit.tables import active_rows, has_usable_caption, scatter, set_columns

OUTPUT_COLUMNS = ("clip_similarity", "image_embedding", "text_embedding")


@dataclass(frozen=True)
class ClipSimilarityConfig:
    batch_size: int = 32
    device: str = "cpu"  # where the int8 similarity kernel runs (audit.kernels.dispatch)


def _paired_cosine(a: np.ndarray, b: np.ndarray, device: str) -> np.ndarray:
    """Cosine from block-int8 codes, as stored in the run folder, so a rerun from the stored
    embeddings gives the same similarity (within the documented 0.003 at the 99.9th percentile)."""
    quantize = get_kernel("quantize_int8", device)
    block = block_size_for(a.shape[1])
    if device == "cuda":  # the Triton kernels take tensors on the GPU
        import torch

        a, b = torch.as_tensor(a, device="cuda"), torch.as_tensor(b, device="cuda")
    qa, qb = quantize(a, block_size=block), quantize(b, block_size=block)
    cos = get_kernel("paired_cosine_int8", device)(qa, qb)
    return np.asarray(cos.cpu().numpy() if hasattr(cos, "cpu") else cos, np.float32)


def _embedding_column(n: int, idx: np.ndarray, emb: np.ndarray) -> pa.Array:
    rows: list[list[float] | None] = [None] * n
    for j, i in enumerate(idx):
        rows[int(i)] = emb[j].tolist()
    return pa.array(rows, pa.list_(pa.float32()))


def _batched(fn: Callable[[Sequence], np.ndarray], items: list, batch_size: int) -> np.ndarray:
    parts = [fn(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def score_clip_similarity(
    table: pa.Table, cfg: ClipSimilarityConfig, *, model: ClipModel, images: Mapping[int, DecodedImage]
) -> pa.Table:
    """Adds clip_similarity and both embeddings (L2-normalised).

    Rows that carry precomputed embeddings (clip-retrieval input) run no model; rows without an
    image still get a text embedding.
    """
    n = table.num_rows
    active = active_rows(table)
    status = table.column("image_status").to_pylist()
    pre_img = table.column("image_embedding").to_pylist()
    pre_txt = table.column("text_embedding").to_pylist()
    captions = table.column("caption").to_pylist()
    captioned = has_usable_caption(table)

    has_pre = [pre_img[i] is not None and pre_txt[i] is not None for i in range(n)]
    pre_idx = np.array([i for i in active if has_pre[i]], dtype=np.int64)
    img_idx = np.array([i for i in active if not has_pre[i] and i in images], dtype=np.int64)
    # image-only rows (no usable caption) get an image embedding and no similarity
    txt_idx = np.array(
        [i for i in active if not has_pre[i] and captioned[i] and status[i] in ("decoded", "absent")],
        dtype=np.int64,
    )

    img_emb = _batched(model.encode_images, [images[int(i)] for i in img_idx], cfg.batch_size)
    txt_emb = _batched(model.encode_texts, [captions[i] for i in txt_idx], cfg.batch_size)
    pre_i = l2_normalize(np.asarray([pre_img[i] for i in pre_idx], np.float32)) if pre_idx.size else None
    pre_t = l2_normalize(np.asarray([pre_txt[i] for i in pre_idx], np.float32)) if pre_idx.size else None

    sim_idx, sims, img_rows, img_vecs, txt_rows, txt_vecs = [], [], [], [], [], []
    if img_idx.size:
        txt_pos = {int(i): j for j, i in enumerate(txt_idx)}
        paired = np.array([j for j, i in enumerate(img_idx) if int(i) in txt_pos], dtype=np.int64)
        if paired.size:
            paired_txt = txt_emb[[txt_pos[int(img_idx[j])] for j in paired]]
            sim_idx.append(img_idx[paired])
            sims.append(_paired_cosine(img_emb[paired], paired_txt, cfg.device))
        img_rows.append(img_idx)
        img_vecs.append(img_emb)
    if txt_idx.size:
        txt_rows.append(txt_idx)
        txt_vecs.append(txt_emb)
    if pre_idx.size:
        sim_idx.append(pre_idx)
        sims.append(_paired_cosine(pre_i, pre_t, cfg.device))
        img_rows.append(pre_idx)
        img_vecs.append(pre_i)
        txt_rows.append(pre_idx)
        txt_vecs.append(pre_t)

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    return set_columns(
        table,
        {
            "clip_similarity": scatter(n, cat(sim_idx, np.int64), cat(sims, np.float32), pa.float32()),
            "image_embedding": _embedding_column(
                n, cat(img_rows, np.int64), np.concatenate(img_vecs) if img_vecs else None
            ),
            "text_embedding": _embedding_column(
                n, cat(txt_rows, np.int64), np.concatenate(txt_vecs) if txt_vecs else None
            ),
        },
    )
