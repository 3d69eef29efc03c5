"""Neighbourhoods with FAISS: near-duplicates, clusters, kNN expansion from seed items, outliers.

Harm in web corpora comes in clusters and copies. This package is the library layer; the Dask pipeline
drives its sync points: sample -> ``NeighbourIndex.train`` -> ``add`` per shard -> ``save`` (run folder
``index/``) -> per shard ``search`` -> ``similar_pairs`` / ``outlier_scores`` -> ``near_duplicate_groups``.
"""

from audit.neighbours.clusters import (
    ClusterAssignment,
    add_cluster_counts,
    assign_clusters,
    cluster_counts,
    clusters_table,
    kmeans_clusters,
    train_kmeans,
)
from audit.neighbours.device import faiss_gpu_available, resolve_faiss_device
from audit.neighbours.duplicates import (
    SimilarPairs,
    exact_duplicate_groups,
    find_near_duplicates,
    near_duplicate_groups,
    similar_pairs,
)
from audit.neighbours.expansion import expand_from_seeds
from audit.neighbours.ids import (
    ROW_LABELS_SCHEMA,
    RowLookup,
    RowTable,
    index_ids,
    row_labels,
    split_index_ids,
)
from audit.neighbours.index import NeighbourIndex, NeighbourIndexGPU
from audit.neighbours.outliers import outlier_scores
from audit.neighbours.results import Neighbours, RangeNeighbours
from audit.neighbours.schemas import (
    CLUSTER_COUNTS_SCHEMA,
    CLUSTERS_SCHEMA,
    DUPLICATES_SCHEMA,
    NEAR_FLAGGED_SCHEMA,
    NEIGHBOUR_ROW_FIELDS,
)
from audit.neighbours.spec import IndexConfig, IndexSpec, choose_index_spec

__all__ = [
    "CLUSTERS_SCHEMA",
    "CLUSTER_COUNTS_SCHEMA",
    "DUPLICATES_SCHEMA",
    "NEAR_FLAGGED_SCHEMA",
    "NEIGHBOUR_ROW_FIELDS",
    "ROW_LABELS_SCHEMA",
    "ClusterAssignment",
    "IndexConfig",
    "IndexSpec",
    "NeighbourIndex",
    "NeighbourIndexGPU",
    "Neighbours",
    "RangeNeighbours",
    "RowLookup",
    "RowTable",
    "SimilarPairs",
    "add_cluster_counts",
    "assign_clusters",
    "choose_index_spec",
    "cluster_counts",
    "clusters_table",
    "exact_duplicate_groups",
    "expand_from_seeds",
    "faiss_gpu_available",
    "find_near_duplicates",
    "index_ids",
    "kmeans_clusters",
    "near_duplicate_groups",
    "outlier_scores",
    "resolve_faiss_device",
    "row_labels",
    "similar_pairs",
    "split_index_ids",
    "train_kmeans",
]
