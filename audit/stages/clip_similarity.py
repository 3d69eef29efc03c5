"""CLIP image and text embeddings and their cosine similarity, per image-text pair."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.clip_model import ClipModel
from audit.embedding_store import block_size_for
from audit.images import DecodedImage
from audit.kernels.dispatch import get_kernel
from audit.kernels.quantize_memo import quantize_once
from audit.kernels.similarity import l2_normalize
from audit.tables import active_rows, embedding_matrix, has_usable_caption, list_column, scatter, set_columns

OUTPUT_COLUMNS = ("clip_similarity", "image_embedding", "text_embedding")


@dataclass(frozen=True)
class ClipSimilarityConfig:
    batch_size: int = 32
    device: str = "cpu"  # where the int8 similarity kernel runs (audit.kernels.dispatch)
    # embed the captions of text-only rows (no image, no precomputed embedding); the audit asks
    # for it on CUDA or when clip.encode_captions_on_cpu is set (audit.shard_audit)
    encode_text_only_rows: bool = True


def _paired_cosine(a: np.ndarray, b: np.ndarray, device: str) -> np.ndarray:
    """Cosine from block-int8 codes, as stored in the run folder, so a rerun from the stored
    embeddings gives the same similarity (within the documented 0.003 at the 99.9th percentile)."""
    quantize = get_kernel("quantize_int8", device)
    block = block_size_for(a.shape[1])
    if device == "cuda":  # the Triton kernels take tensors on the GPU
        import torch

        a, b = torch.as_tensor(a, device="cuda"), torch.as_tensor(b, device="cuda")
    qa, qb = quantize_once(a, block, quantize), quantize_once(b, block, quantize)  # tensors: no memo
    cos = get_kernel("paired_cosine_int8", device)(qa, qb)
    return np.asarray(cos.cpu().numpy() if hasattr(cos, "cpu") else cos, np.float32)


def _rows(matrix: np.ndarray, rows: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The L2-normalised rows of ``matrix`` (holding ``rows``) for ``wanted``, read-only: the
    stages after this one quantize the same memory once (audit.kernels.quantize_memo)."""
    same = rows.size == wanted.size and np.array_equal(rows, wanted)  # the common case: no gather
    out = l2_normalize(matrix if same else matrix[np.searchsorted(rows, wanted)])
    out.flags.writeable = False
    return out


def _batched(fn: Callable[[Sequence], np.ndarray], items: list, batch_size: int) -> np.ndarray:
    parts = [fn(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def score_clip_similarity(
    table: pa.Table, cfg: ClipSimilarityConfig, *, model: ClipModel, images: Mapping[int, DecodedImage]
) -> pa.Table:
    """Adds clip_similarity and both embeddings (L2-normalised).

    Rows that carry precomputed embeddings (clip-retrieval input) run no model; rows without an
    image get a text embedding when ``cfg.encode_text_only_rows`` (else none: see
    ``captions_not_embedded``).
    """
    n = table.num_rows
    active = active_rows(table)
    status = table.column("image_status")
    pre_rows_i, pre_img = embedding_matrix(table.column("image_embedding"))
    pre_rows_t, pre_txt = embedding_matrix(table.column("text_embedding"))
    captioned = has_usable_caption(table)

    has_img, has_txt = np.zeros(n, bool), np.zeros(n, bool)
    has_img[pre_rows_i], has_txt[pre_rows_t] = True, True
    has_pre = has_img & has_txt
    pre_idx = active[has_pre[active]]
    in_images = np.zeros(n, bool)
    in_images[np.fromiter(images.keys(), np.int64, len(images))] = True
    img_idx = active[~has_pre[active] & in_images[active]]
    # image-only rows (no usable caption) get an image embedding and no similarity
    decoded, absent = (
        pc.fill_null(pc.equal(status, v), False).to_numpy(zero_copy_only=False) for v in ("decoded", "absent")
    )
    txt_ok = captioned & (decoded | (absent & cfg.encode_text_only_rows))
    txt_idx = active[~has_pre[active] & txt_ok[active]]

    img_emb = _batched(model.encode_images, [images[int(i)] for i in img_idx], cfg.batch_size)
    captions = table.column("caption").take(pa.array(txt_idx, pa.int64())).to_pylist() if txt_idx.size else []
    txt_emb = _batched(model.encode_texts, captions, cfg.batch_size)
    pre_i = pre_t = None
    if pre_idx.size:
        pre_i, pre_t = _rows(pre_img, pre_rows_i, pre_idx), _rows(pre_txt, pre_rows_t, pre_idx)

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

    def vectors(parts: list[np.ndarray]) -> np.ndarray | None:
        # one part (every row precomputed, or every row encoded) is kept as it is, not copied: the
        # list column then holds the memory the similarity kernel quantized
        return None if not parts else parts[0] if len(parts) == 1 else np.concatenate(parts)

    return set_columns(
        table,
        {
            "clip_similarity": scatter(n, cat(sim_idx, np.int64), cat(sims, np.float32), pa.float32()),
            "image_embedding": list_column(n, cat(img_rows, np.int64), vectors(img_vecs)),
            "text_embedding": list_column(n, cat(txt_rows, np.int64), vectors(txt_vecs)),
        },
    )


def captions_not_embedded(table: pa.Table) -> int:
    """Rows with a usable caption that got no text embedding (text-only rows left unembedded)."""
    captioned = pa.array(has_usable_caption(table))
    active = np.zeros(table.num_rows, bool)
    active[active_rows(table)] = True
    missing = np.logical_and(
        np.logical_and(captioned.to_numpy(zero_copy_only=False), active),
        pc.is_null(table.column("text_embedding")).to_numpy(zero_copy_only=False),
    )
    return int(missing.sum())
