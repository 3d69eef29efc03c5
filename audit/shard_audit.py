"""Audit one shard: read, score, flag, and write its outputs atomically. Runs inside a worker."""

from __future__ import annotations

import socket
import time
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.config import AuditConfig
from audit.embedding_store import write_shard_embeddings
from audit.errors import EmbeddingMismatchError
from audit.model_cache import Models, get_models
from audit.readers import ShardData, read_shard
from audit.rules import apply_rules
from audit.runfolder import RunFolder
from audit.schemas import QUARANTINE_SCHEMA, SCORES_SCHEMA, ShardRecord
from audit.shards import ShardSpec
from audit.stages.clip_similarity import ClipSimilarityConfig, score_clip_similarity
from audit.stages.concept_probes import score_concepts
from audit.stages.decode_images import DecodeImagesConfig, decode_images
from audit.stages.image_safety import ImageNsfwConfig, score_clip_nsfw, score_image_nsfw
from audit.stages.known_bad import match_known_bad
from audit.stages.similarity_analysis import analyse_similarity
from audit.stages.text_safety import TextSafetyConfig, score_text_safety
from audit.tables import conform


@contextmanager
def _timed(seconds: dict[str, float], name: str):
    t0 = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - t0, 4)


def _quarantined(table: pa.Table) -> np.ndarray:
    return pc.is_valid(table.column("quarantine_reason")).to_numpy(zero_copy_only=False)


def split_quarantine(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(scored rows as SCORES_SCHEMA, quarantined rows as QUARANTINE_SCHEMA)."""
    bad = pc.is_valid(table.column("quarantine_reason")).to_numpy(zero_copy_only=False)
    scored = conform(table.filter(pa.array(~bad)), SCORES_SCHEMA)
    q = table.filter(pa.array(bad))
    quarantined = pa.table(
        {
            "key": q.column("key"),
            "shard_id": q.column("shard_id"),
            "row_index": q.column("row_index"),
            "url": q.column("url"),
            "caption": q.column("caption"),
            "reason": q.column("quarantine_reason"),
            "detail": q.column("quarantine_detail"),
        },
        schema=QUARANTINE_SCHEMA,
    )
    return scored, quarantined


def check_precomputed(data: ShardData, spec: ShardSpec, models: Models) -> None:
    """Precomputed embeddings must live in the configured CLIP model's space: concept probes and
    similarities compare them with that model's text embeddings."""
    emb = data.table.column("image_embedding")
    first = next((v for v in emb.to_pylist() if v is not None), None) if emb.null_count < len(emb) else None
    if first is None:
        return
    source = f" (from {data.embedding_model})" if data.embedding_model else ""
    if data.embedding_model and data.embedding_model != models.clip.architecture:
        raise EmbeddingMismatchError(
            f"{spec.path}: precomputed embeddings come from {data.embedding_model}, "
            f"but clip.model is {models.clip.architecture}"
        )
    if len(first) != models.clip.embed_dim:
        raise EmbeddingMismatchError(
            f"{spec.path}: precomputed embeddings are {len(first)}-d{source}, "
            f"but clip.model {models.clip.architecture} makes {models.clip.embed_dim}-d embeddings"
        )


def score_shard_table(table: pa.Table, cfg: AuditConfig) -> pa.Table:
    """The chain of row-local stages over an ingested table; every stage keeps every row."""
    models = get_models(cfg)
    table, images = decode_images(table, DecodeImagesConfig(max_pixels=cfg.images.max_pixels))
    table = match_known_bad(table, lists=models.known_bad, images=images)
    table = score_clip_similarity(
        table, ClipSimilarityConfig(batch_size=cfg.clip.batch_size), model=models.clip, images=images
    )
    table = analyse_similarity(table)
    if models.concepts is not None:
        table = score_concepts(table, probes=models.concepts)
    if models.opennsfw is not None:
        table = score_image_nsfw(
            table, ImageNsfwConfig(batch_size=cfg.images.batch_size), model=models.opennsfw, images=images
        )
    if models.clip_nsfw is not None:
        table = score_clip_nsfw(table, model=models.clip_nsfw)
    return score_text_safety(table, TextSafetyConfig(batch_size=cfg.text.batch_size), scorers=models.text)


def audit_shard(spec: ShardSpec, cfg: AuditConfig, run_url: str) -> ShardRecord:
    """Everything for one shard; the shard record is written last, so it marks the shard done."""
    run = RunFolder(run_url)
    seconds: dict[str, float] = {}
    with _timed(seconds, "load_models"):
        models = get_models(cfg)
    with _timed(seconds, "read"):
        data = read_shard(spec, clip_model=models.clip.architecture)
    check_precomputed(data, spec, models)
    with _timed(seconds, "score"):
        table = score_shard_table(data.table, cfg)
    scored, quarantined = split_quarantine(table)
    with _timed(seconds, "flag"):
        flags = apply_rules(scored, models.rules, clip_meaningful=models.clip.meaningful)
    with _timed(seconds, "write"):
        run.write_parquet(run.scores(spec.shard_id), scored)
        write_shard_embeddings(run, spec.shard_id, table.filter(pa.array(~_quarantined(table))))
        run.write_parquet(run.part("flags", spec.shard_id), flags)
        run.write_parquet(run.part("quarantine", spec.shard_id), quarantined)
    if scored.num_rows + quarantined.num_rows != data.table.num_rows:
        raise AssertionError(f"{spec.path}: rows lost in scoring")  # a bug, never bad data
    record = ShardRecord(
        shard_id=spec.shard_id,
        path=spec.path,
        format=spec.format,
        sha256=data.sha256,
        status="done",
        rows_in=data.table.num_rows,
        rows_scored=scored.num_rows,
        rows_quarantined=quarantined.num_rows,
        rows_flagged=flags.num_rows,
        seconds=seconds,
        config_hash=cfg.scoring_hash(),
        fingerprint=spec.fingerprint,
        worker=socket.gethostname(),
        notes=data.notes,
        models=models.records(),
        device=models.device,
        kernel_backends={"paired_cosine": "numpy-float32"},
    )
    run.write_json(run.shard_record(spec.shard_id), record)
    return record


def image_status_counts(scored: pa.Table) -> dict[str, int]:
    values, counts = np.unique(
        np.asarray(scored.column("image_status").to_pylist(), dtype=str), return_counts=True
    )
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}
