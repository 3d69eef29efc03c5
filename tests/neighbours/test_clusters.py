from __future__ import annotations

import numpy as np
import pyarrow as pa

from audit.neighbours.clusters import (
    add_cluster_counts,
    assign_clusters,
    cluster_counts,
    clusters_table,
    kmeans_clusters,
)
from audit.neighbours.index import normalised
from audit.neighbours.schemas import CLUSTER_COUNTS_SCHEMA, CLUSTERS_SCHEMA


def test_clusters_table_flag_rates_are_exact_and_shards_add_up() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2], np.int32)
    flagged = np.array([1, 0, 0, 1, 0, 0, 1, 1, 1, 1, 0], bool)
    concepts = ["gore", "gore", None, "cat", "dog", "dog", "nude", "nude", "gore", "nude", "gore"]
    whole = clusters_table(cluster_counts(labels, flagged, concepts), top_n=2)
    assert whole.schema == CLUSTERS_SCHEMA
    assert whole.to_pylist() == [
        {"cluster": 0, "n_rows": 4, "n_flagged": 2, "flag_rate": 0.5,
         "top_concepts": ["gore", "cat"], "top_concept_counts": [2, 1]},
        {"cluster": 1, "n_rows": 2, "n_flagged": 0, "flag_rate": 0.0,
         "top_concepts": ["dog"], "top_concept_counts": [2]},
        {"cluster": 2, "n_rows": 5, "n_flagged": 4, "flag_rate": 0.8,
         "top_concepts": ["nude", "gore"], "top_concept_counts": [3, 2]},
    ]  # fmt: skip
    shards = [slice(0, 5), slice(5, 9), slice(9, None)]
    parts = [cluster_counts(labels[s], flagged[s], concepts[s]) for s in shards]
    assert all(p.schema == CLUSTER_COUNTS_SCHEMA for p in parts)
    assert clusters_table(parts, top_n=2).equals(whole)
    running = CLUSTER_COUNTS_SCHEMA.empty_table()
    for part in parts:  # the pipeline's running sum over shards
        running = add_cluster_counts(running, part)
    assert running.schema == CLUSTER_COUNTS_SCHEMA
    assert running.num_rows == cluster_counts(labels, flagged, concepts).num_rows
    assert clusters_table(running, top_n=2).equals(whole)


def test_clusters_without_concepts_or_flags_given() -> None:
    table = clusters_table(cluster_counts(np.array([3, 3, 1]), pa.array([None, True, False])))
    assert table.to_pylist() == [
        {
            "cluster": 1,
            "n_rows": 1,
            "n_flagged": 0,
            "flag_rate": 0.0,
            "top_concepts": [],
            "top_concept_counts": [],
        },
        {
            "cluster": 3,
            "n_rows": 2,
            "n_flagged": 1,
            "flag_rate": 0.5,
            "top_concepts": [],
            "top_concept_counts": [],
        },
    ]
    assert clusters_table([]).num_rows == 0


def test_kmeans_recovers_the_planted_clusters(corpus, vectors) -> None:
    # Twice as many clusters as planted: from a random start, k-means with k exact may merge two planted
    # clusters; over-clustering (a generous k, what reviewers should use) keeps every cluster pure.
    k = 2 * corpus.n_clusters
    result = kmeans_clusters(vectors, k, niter=20, seed=1)
    planted = corpus.labels()
    real = planted >= 0
    purity = sum(np.bincount(planted[real][result.labels[real] == c]).max(initial=0) for c in range(k))
    assert purity / real.sum() >= 0.98
    assert result.labels.dtype == np.int32
    assert result.centroids.shape == (k, vectors.shape[1])


def test_assignment_is_the_most_similar_centroid(vectors) -> None:
    centroids = normalised(vectors[:7], vectors.shape[1])
    labels, sims = assign_clusters(centroids, vectors[:500])
    brute = normalised(vectors[:500], vectors.shape[1]) @ centroids.T
    np.testing.assert_array_equal(labels, brute.argmax(axis=1))
    np.testing.assert_allclose(sims, brute.max(axis=1), atol=1e-5)


def test_cluster_counts_take_table_columns_of_several_chunks() -> None:
    shard = pa.concat_tables(
        [
            pa.table({"cluster": [0, 1], "flagged": [True, False]}),
            pa.table({"cluster": [0], "flagged": [True]}),
        ]
    )
    table = clusters_table(cluster_counts(shard["cluster"], shard["flagged"]))
    assert table.select(["cluster", "n_rows", "n_flagged"]).to_pylist() == [
        {"cluster": 0, "n_rows": 2, "n_flagged": 2},
        {"cluster": 1, "n_rows": 1, "n_flagged": 0},
    ]
