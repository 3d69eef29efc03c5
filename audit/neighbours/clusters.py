"""k-means clusters over the corpus, so reviewers can act on a whole cluster at once.

Sync points: ``train_kmeans`` on a sample -> save the centroids -> ``assign_clusters`` per shard ->
``cluster_counts`` per shard (additive) -> ``clusters_table`` over all shards' counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.neighbours.device import gpu_resources, resolve_faiss_device
from audit.neighbours.index import normalised
from audit.neighbours.schemas import CLUSTER_COUNTS_SCHEMA, CLUSTERS_SCHEMA, to_arrow


@dataclass(frozen=True)
class ClusterAssignment:
    centroids: np.ndarray  # (n_clusters, dim) float32, unit norm
    labels: np.ndarray  # (n_rows,) int32
    similarity: np.ndarray  # (n_rows,) float32: cosine to the row's centroid


def train_kmeans(
    sample: np.ndarray, n_clusters: int, *, niter: int = 20, seed: int = 1234, device: str = "auto"
) -> np.ndarray:
    """Spherical k-means centroids (unit norm, for cosine) from a sample of the corpus."""
    x = normalised(sample, np.shape(sample)[-1])
    if len(x) < n_clusters:
        raise ValueError(f"k-means with {n_clusters} clusters needs at least as many rows, got {len(x)}")
    gpu = resolve_faiss_device(device) == "cuda"
    km = faiss.Kmeans(x.shape[1], n_clusters, niter=niter, seed=seed, spherical=True, gpu=gpu, verbose=False)
    km.train(x)
    return np.array(km.centroids, dtype=np.float32)


def assign_clusters(
    centroids: np.ndarray, vectors: np.ndarray, *, device: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """(cluster id, cosine to its centroid) of every row: one shard at a time."""
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    x = normalised(vectors, centroids.shape[1])
    index = faiss.IndexFlatIP(centroids.shape[1])
    if resolve_faiss_device(device) == "cuda":
        index = faiss.index_cpu_to_gpu(gpu_resources(), 0, index)
    index.add(centroids)
    sims, labels = index.search(x, 1)
    return labels[:, 0].astype(np.int32), np.clip(sims[:, 0], -1.0, 1.0)


def kmeans_clusters(
    vectors: np.ndarray,
    n_clusters: int,
    *,
    sample_size: int | None = None,
    niter: int = 20,
    seed: int = 1234,
    device: str = "auto",
) -> ClusterAssignment:
    """Train on a random sample (default 256 rows a cluster, faiss' own cap) and assign every row."""
    n = len(vectors)
    size = min(n, sample_size or 256 * n_clusters)
    pick = (
        np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)) if size < n else slice(None)
    )
    centroids = train_kmeans(vectors[pick], n_clusters, niter=niter, seed=seed, device=device)
    labels, sims = assign_clusters(centroids, vectors, device=device)
    return ClusterAssignment(centroids, labels, sims)


def cluster_counts(
    labels: np.ndarray | pa.Array | pa.ChunkedArray,
    flagged: np.ndarray | pa.Array | pa.ChunkedArray,
    top_concepts: Sequence[str | None] | pa.Array | pa.ChunkedArray | None = None,
) -> pa.Table:
    """One shard's rows and flagged rows per (cluster, concept): a CLUSTER_COUNTS_SCHEMA table.
    flagged is boolean per row (null counts as not flagged); top_concepts is each row's top concept."""
    n = len(labels)
    flags = pc.fill_null(to_arrow(flagged, pa.bool_()), False)
    concepts = pa.nulls(n, pa.string()) if top_concepts is None else to_arrow(top_concepts, pa.string())
    if len(flags) != n or len(concepts) != n:
        raise ValueError(
            f"{n} labels, {len(flags)} flags and {len(concepts)} concepts: need one each per row"
        )
    t = pa.table(
        {"cluster": to_arrow(labels, pa.int32()), "concept": concepts, "flag": flags.cast(pa.int64())}
    )
    g = t.group_by(["cluster", "concept"], use_threads=False).aggregate([("flag", "count"), ("flag", "sum")])
    g = g.rename_columns({"flag_count": "n_rows", "flag_sum": "n_flagged"})
    g = g.select(CLUSTER_COUNTS_SCHEMA.names).cast(CLUSTER_COUNTS_SCHEMA)
    return g.sort_by([("cluster", "ascending"), ("concept", "ascending")])


def add_cluster_counts(total: pa.Table, counts: pa.Table) -> pa.Table:
    """Two CLUSTER_COUNTS_SCHEMA tables summed into one (a running total over shards stays one row per
    cluster and concept)."""
    names = CLUSTER_COUNTS_SCHEMA.names
    both = pa.concat_tables([total.select(names), counts.select(names)])
    sums = [("n_rows", "sum"), ("n_flagged", "sum")]
    g = both.group_by(["cluster", "concept"], use_threads=False).aggregate(sums)
    g = g.rename_columns({"n_rows_sum": "n_rows", "n_flagged_sum": "n_flagged"})
    return g.select(CLUSTER_COUNTS_SCHEMA.names).cast(CLUSTER_COUNTS_SCHEMA)


def clusters_table(counts: pa.Table | Sequence[pa.Table], *, top_n: int = 5) -> pa.Table:
    """Per-cluster flag rate and top concepts (CLUSTERS_SCHEMA) from one or many cluster_counts tables."""
    if not isinstance(counts, pa.Table):
        parts = [c.select(CLUSTER_COUNTS_SCHEMA.names) for c in counts]
        counts = pa.concat_tables(parts) if parts else CLUSTER_COUNTS_SCHEMA.empty_table()
    if not counts.num_rows:
        return CLUSTERS_SCHEMA.empty_table()
    totals = counts.group_by("cluster", use_threads=False).aggregate(
        [("n_rows", "sum"), ("n_flagged", "sum")]
    )
    totals = totals.sort_by("cluster")
    cluster = totals["cluster"].to_numpy()
    n_rows = totals["n_rows_sum"].to_numpy()
    n_flagged = totals["n_flagged_sum"].to_numpy()

    named = counts.filter(pc.is_valid(counts["concept"]))
    named = named.group_by(["cluster", "concept"], use_threads=False).aggregate([("n_rows", "sum")])
    named = named.sort_by([("cluster", "ascending"), ("n_rows_sum", "descending"), ("concept", "ascending")])
    c_cluster = named["cluster"].to_numpy()
    starts = np.searchsorted(c_cluster, c_cluster, side="left")
    top = np.flatnonzero(np.arange(len(c_cluster)) - starts < top_n)  # first top_n rows of each cluster
    per_cluster = np.bincount(np.searchsorted(cluster, c_cluster[top]), minlength=len(cluster))
    offsets = pa.array(np.concatenate([[0], np.cumsum(per_cluster)]).astype(np.int32))
    take = pa.array(top)
    return pa.table(
        {
            "cluster": pa.array(cluster, pa.int32()),
            "n_rows": pa.array(n_rows, pa.int64()),
            "n_flagged": pa.array(n_flagged, pa.int64()),
            "flag_rate": pa.array(n_flagged / np.maximum(n_rows, 1), pa.float64()),
            "top_concepts": pa.ListArray.from_arrays(offsets, named["concept"].combine_chunks().take(take)),
            "top_concept_counts": pa.ListArray.from_arrays(
                offsets, named["n_rows_sum"].combine_chunks().take(take).cast(pa.int64())
            ),
        },
        schema=CLUSTERS_SCHEMA,
    )
