"""Corpus-wide FAISS stages, explicit sync points after the per-shard audit:

    sample -> train (index + k-means) -> add every shard -> save index/   (driver)
    per shard: search -> near-duplicate pairs, outlier scores, cluster ids  (Dask tasks)
    merge: duplicate groups (exact, image, caption) and per-cluster flag rates (driver)

Resumable like the rest: the index and each shard's neighbour outputs record the digest of the
corpus they were built from, and are reused while it is unchanged. Outputs name rows by ``row_id``
(the embedding files' ``key`` column holds it) with the dataset's ``key`` beside it as a label; FAISS
itself sees int64 index ids (``audit.neighbours.ids``), mapped back to row ids shard by shard.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dask.distributed import Client, as_completed

from audit.config import AuditConfig, NeighbourSettings
from audit.embedding_store import embedding_dim, embedding_path, read_shard_embeddings
from audit.errors import ConfigError, InputFileError
from audit.neighbours import (
    CLUSTER_COUNTS_SCHEMA,
    ROW_LABELS_SCHEMA,
    IndexConfig,
    NeighbourIndex,
    RowLookup,
    SimilarPairs,
    add_cluster_counts,
    assign_clusters,
    choose_index_spec,
    cluster_counts,
    clusters_table,
    index_ids,
    outlier_scores,
    similar_pairs,
    split_index_ids,
    train_kmeans,
)
from audit.pipelines.duplicates_run import (
    SIDES,
    embedding_rows,
    scores_positions,
    write_duplicates,
    write_pairs,
)
from audit.row_identity import split_row_id
from audit.runfolder import RunFolder
from audit.schemas import NEIGHBOURS_SCHEMA, Manifest, ShardRecord

log = logging.getLogger(__name__)


def corpus_digest(records: list[ShardRecord], settings: NeighbourSettings) -> str:
    parts = sorted(f"{r.shard_id}:{r.sha256}:{r.config_hash}" for r in records)
    parts.append(settings.model_dump_json())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _n_clusters(n: int, settings: NeighbourSettings) -> int:
    wanted = settings.clusters or round(float(np.sqrt(n)) / 2)
    return max(1, min(wanted, 1024, n))


def build_indexes(
    run: RunFolder, records: list[ShardRecord], settings: NeighbourSettings, digest: str
) -> bool:
    """Train and fill one index per side, plus k-means centroids; skipped when built for this digest.

    Two streaming passes over the shards' embedding files: one collects a random training sample, the
    next adds shard after shard. The driver holds the index, the sample and one shard.
    """
    stamp = run.path("index", "corpus.json")
    if run.exists(stamp) and run.read_json(stamp).get("digest") == digest:
        return True
    built = False
    for side in SIDES:
        paths = [embedding_path(run, r.shard_id, side) for r in records]
        counts = np.array([run.parquet_rows(p) if run.exists(p) else 0 for p in paths], np.int64)
        n = int(counts.sum())
        if n < 2:
            continue
        dim = embedding_dim(run, records[int(np.flatnonzero(counts)[0])].shard_id, side)
        spec = choose_index_spec(
            n, dim, IndexConfig(memory_budget_bytes=int(settings.memory_budget_gb * 2**30))
        )
        n_clusters = _n_clusters(n, settings)
        # enough rows for the index's training and for faiss' k-means (256 a centroid, its own cap)
        wanted = min(n, max(spec.train_size, 256 * n_clusters if side == "image" else 0))
        sample = _sample_rows(run, records, side, counts, wanted) if wanted else None
        index = NeighbourIndex.create(spec)
        if spec.kind != "flat":
            train = sample
            if spec.train_size and len(sample) > spec.train_size:
                train = sample[np.random.default_rng(1).choice(len(sample), spec.train_size, replace=False)]
            index.train(train)
        for i, r in enumerate(records):
            if counts[i]:
                _, vectors = read_shard_embeddings(run, r.shard_id, side)
                index.add(vectors, index_ids(i, len(vectors)))
        index.save(run.url_of("index", side))
        if side == "image":
            centroids = train_kmeans(sample, n_clusters)
            run.write_bytes(run.path("index", "centroids.npy"), _npy(centroids))
        built = True
    run.write_json(stamp, {"digest": digest})
    return built


def _sample_rows(
    run: RunFolder, records: list[ShardRecord], side: str, counts: np.ndarray, size: int
) -> np.ndarray:
    """``size`` rows drawn uniformly without replacement from the whole corpus (seeded), read shard by
    shard: how many from each shard is drawn first (multivariate hypergeometric), then which."""
    rng = np.random.default_rng(0)
    per_shard = rng.multivariate_hypergeometric(counts, min(size, int(counts.sum())))
    parts = []
    for r, count, take in zip(records, counts, per_shard, strict=True):
        if take:
            _, vectors = read_shard_embeddings(run, r.shard_id, side)
            parts.append(vectors[np.sort(rng.choice(int(count), int(take), replace=False))])
    return np.concatenate(parts)


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@functools.lru_cache(maxsize=4)
def _load_index(folder: str, digest: str) -> NeighbourIndex:
    return NeighbourIndex.load(folder)  # once per worker and corpus digest


def neighbours_shard(
    run_url: str, shard_index: int, shard_id: str, settings: NeighbourSettings, digest: str
) -> str:
    """One shard's search against the corpus index: pairs, outlier scores, clusters. Runs on a worker."""
    run = RunFolder(run_url)
    done = run.path("neighbours", f"{shard_id}.json")
    if run.exists(done) and run.read_json(done).get("digest") == digest:
        return shard_id
    image = read_shard_embeddings(run, shard_id, "image")  # its key column holds the row ids
    row_ids = pa.array(image[0] if image else [], pa.string())
    vectors = image[1] if image else np.zeros((0, 1), np.float32)
    ids = index_ids(shard_index, len(row_ids))
    if len(row_ids) and run.exists(run.path("index", "image", "index.json")):
        index = _load_index(run.url_of("index", "image"), digest)
        k = min(max(settings.k, settings.outlier_k + 1), index.ntotal)
        found = index.search(vectors, k, nprobe=settings.nprobe)
        pairs = similar_pairs(ids, found, settings.near_duplicate_similarity)
        outliers = outlier_scores(ids, found, min(settings.outlier_k, k - 1)) if k > 1 else np.zeros(len(ids))
        with run.fs.open(run.path("index", "centroids.npy"), "rb") as f:
            centroids = np.load(f)
        labels, closeness = assign_clusters(centroids, vectors)
    else:  # too few rows in the corpus for an index: no neighbours, and say so with nulls
        pairs = SimilarPairs.of(np.empty(0), np.empty(0), np.empty(0))
        outliers = np.full(len(row_ids), np.nan, np.float32)
        labels, closeness = None, np.full(len(row_ids), np.nan, np.float32)
    write_pairs(run, shard_id, "image", pairs)
    text = read_shard_embeddings(run, shard_id, "text")
    if text and run.exists(run.path("index", "text", "index.json")):
        tindex = _load_index(run.url_of("index", "text"), digest)
        tk = min(settings.k, tindex.ntotal)
        tfound = tindex.search(text[1], tk, nprobe=settings.nprobe)
        tpairs = similar_pairs(
            index_ids(shard_index, len(text[0])), tfound, settings.caption_duplicate_similarity
        )
    else:
        tpairs = SimilarPairs.of(np.empty(0), np.empty(0), np.empty(0))
    write_pairs(run, shard_id, "text", tpairs)

    # rows are matched by row id: a same-key row of another shard is another row
    flags = run.read_parquet(run.part("flags", shard_id), columns=["row_id"]).column("row_id")
    scores = run.read_parquet(run.scores(shard_id), columns=["row_id", "key", "concept_hits"])
    at = scores_positions(run, shard_id, row_ids, scores)
    if labels is not None:
        flagged = pc.is_in(row_ids, value_set=flags.combine_chunks())
        top = [(hits or [None])[0] for hits in scores.column("concept_hits").take(at).to_pylist()]
        counts = cluster_counts(labels, flagged, top)
    else:
        counts = cluster_counts(np.zeros(0, np.int32), [], [])
    run.write_parquet(run.part("cluster_counts", shard_id), counts)
    rows = pa.table(
        {
            "row_id": row_ids,
            "key": scores.column("key").take(at),
            "cluster": pa.array(labels if labels is not None else [None] * len(row_ids), pa.int32()),
            "cluster_similarity": pa.array(closeness, pa.float32(), from_pandas=True),
            "outlier_score": pa.array(outliers, pa.float32(), from_pandas=True),
        },
        schema=NEIGHBOURS_SCHEMA,
    )
    run.write_parquet(run.path("neighbours", f"{shard_id}.parquet"), rows)
    run.write_json(done, {"digest": digest})  # last: marks this shard's neighbour outputs complete
    return shard_id


def neighbours_pending(run: RunFolder, records: list[ShardRecord], settings: NeighbourSettings) -> bool:
    """Whether any corpus-wide output is missing or was built from another corpus or settings."""
    done = [r for r in records if r.status == "done"]
    digest = corpus_digest(done, settings)
    stamps = [run.path("index", "corpus.json")] + [run.path("neighbours", f"{r.shard_id}.json") for r in done]
    return any(not run.exists(p) or run.read_json(p).get("digest") != digest for p in stamps)


def run_neighbours(
    client: Client, run: RunFolder, cfg: AuditConfig, records: list[ShardRecord]
) -> dict[str, int]:
    """The sync points above, for the shards that are done; returns counts for the summary."""
    settings = cfg.neighbours
    done = [r for r in records if r.status == "done"]
    digest = corpus_digest(done, settings)
    build_indexes(run, done, settings, digest)
    futures = [
        client.submit(neighbours_shard, run.url, i, r.shard_id, settings, digest, pure=False,
                      key=f"neighbours-{r.shard_id}-{digest}")
        for i, r in enumerate(done)
    ]  # fmt: skip
    for fut in as_completed(futures):
        fut.result()
    return merge_neighbours(run, done)


def merge_neighbours(run: RunFolder, done: list[ShardRecord]) -> dict[str, int]:
    """duplicates.parquet and clusters.parquet from the shards' neighbour outputs; counts for the summary."""
    rows = write_duplicates(run, done)
    counts = CLUSTER_COUNTS_SCHEMA.empty_table()
    for r in done:  # a running sum: one row per (cluster, concept), however many shards
        counts = add_cluster_counts(counts, run.read_parquet(run.part("cluster_counts", r.shard_id)))
    clusters = clusters_table(counts)
    run.write_parquet(run.path("clusters.parquet"), clusters)
    return {
        "duplicate_rows_exact": rows.get("exact", 0),
        "duplicate_rows_image": rows.get("image", 0),
        "duplicate_rows_caption": rows.get("caption", 0),
        "clusters": clusters.num_rows,
    }


def describe(run: RunFolder) -> dict:
    path = run.path("index", "image", "index.json")
    return json.loads(run.fs.cat(path)) if run.exists(path) else {}


def shard_row_lookup(run: RunFolder, shard_ids: list[str], side: str) -> RowLookup:
    """Index ids -> row labels, read from the embedding files (and scores) of the shards the ids
    fall in, each once: a lookup for a few rows that never loads the corpus' row ids."""
    cache: dict[int, pa.Table] = {}

    def lookup(ids: np.ndarray) -> pa.Table:
        shard, position = split_index_ids(ids)
        parts, order = [], []
        for s in np.unique(shard).tolist():
            if s not in cache:
                cache[s] = embedding_rows(run, shard_ids[s], side)
            sel = np.flatnonzero(shard == s)
            parts.append(cache[s].take(pa.array(position[sel])))
            order.append(sel)
        if not parts:
            return ROW_LABELS_SCHEMA.empty_table()
        return pa.concat_tables(parts).take(pa.array(np.argsort(np.concatenate(order))))

    return lookup


def _seed_shards(seed_row_ids: list[str]) -> dict[str, list[str]]:
    """Seeds grouped by shard id; ConfigError naming a seed that is not a row id."""
    by_shard: dict[str, list[str]] = {}
    for seed in seed_row_ids:
        try:
            shard_id, _ = split_row_id(seed)
        except ValueError:
            raise ConfigError(
                f"expand: seed {seed!r} is not a row id (expected <shard_id>:<row_index>)"
            ) from None
        by_shard.setdefault(shard_id, []).append(seed)
    return by_shard


def expand_seeds(
    run: RunFolder,
    seed_row_ids: list[str],
    *,
    min_similarity: float | None,
    k: int | None,
    write: bool = True,
) -> tuple[pa.Table, list[str]]:
    """Every item within ``min_similarity`` (cosine) or among the ``k`` nearest of a seed row, linked
    to the seed that found it, as ``near-flagged`` rows written to RUN/near_flagged.parquet; and the
    seeds that have no image embedding in the run (quarantined, image-less or of no shard of it).

    Seeds are row ids: a row sharing a seed's key in another shard is neither a seed nor left out.
    """
    from audit.neighbours import expand_from_seeds

    if not run.exists(run.path("index", "image", "index.json")):
        raise InputFileError(f"{run.url}: no index/image in the run folder (audit with neighbours.enabled)")
    seeds = list(dict.fromkeys(seed_row_ids))
    by_shard = _seed_shards(seeds)
    manifest = Manifest.model_validate(run.read_json(run.manifest))
    shard_ids = [r.shard_id for r in manifest.shards if r.status == "done"]
    shard_index = {s: i for i, s in enumerate(shard_ids)}  # the order build_indexes numbered them in
    seed_vectors, seed_ids, found = [], [], set()
    for shard_id, wanted in by_shard.items():
        got = read_shard_embeddings(run, shard_id, "image") if shard_id in shard_index else None
        if not got:
            continue
        position = {row_id: j for j, row_id in enumerate(got[0])}
        take = [position[s] for s in wanted if s in position]
        found.update(s for s in wanted if s in position)
        seed_vectors.append(got[1][take])
        seed_ids.append(index_ids(shard_index[shard_id], len(got[0]))[take])
    missing = [s for s in seeds if s not in found]
    if not found:
        raise InputFileError(
            f"none of the {len(seeds)} seed rows has an image embedding in {run.url} "
            f"(e.g. {missing[0]!r}: quarantined, without an image, or not a row of this run)"
        )
    index = NeighbourIndex.load(run.url_of("index", "image"))
    nprobe = max(index.spec.nprobe, 8)  # expansion wants recall more than speed
    table = expand_from_seeds(index, np.concatenate(seed_vectors), np.concatenate(seed_ids),
                              shard_row_lookup(run, shard_ids, "image"),
                              min_similarity=min_similarity, k=k, nprobe=nprobe)  # fmt: skip
    if write:  # the dashboard's "more like this" only shows its expansion
        run.write_parquet(run.path("near_flagged.parquet"), table)
    return table, missing
