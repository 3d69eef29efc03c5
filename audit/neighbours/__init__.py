"""Neighbourhoods with FAISS: near-duplicates, clusters, kNN expansion from seed items, outliers.

Harm in web corpora comes in clusters and copies. This package is the library layer; the Dask pipeline
drives its sync points: sample -> ``NeighbourIndex.train`` -> ``add`` per shard -> ``save`` (run folder
``index/``) -> per shard ``search`` -> ``similar_pairs`` / ``outlier_scores`` -> ``near_duplicate_groups``.
"""

# Submodules load on first use (PEP 562): a worker that needs only the schemas (the caption
# duplicates' parts) does not import FAISS and SciPy (0.28 s of every worker's start, profiled).
import importlib
from typing import Any

_WHERE = {
    "CLUSTERS_SCHEMA": "schemas",
    "CLUSTER_COUNTS_SCHEMA": "schemas",
    "ClusterAssignment": "clusters",
    "DUPLICATES_SCHEMA": "schemas",
    "IndexConfig": "spec",
    "IndexSpec": "spec",
    "NEAR_FLAGGED_SCHEMA": "schemas",
    "NEIGHBOUR_ROW_FIELDS": "schemas",
    "NeighbourIndex": "index",
    "NeighbourIndexGPU": "index",
    "Neighbours": "results",
    "ROW_LABELS_SCHEMA": "ids",
    "RangeNeighbours": "results",
    "RowLookup": "ids",
    "RowTable": "ids",
    "SimilarPairs": "duplicates",
    "add_cluster_counts": "clusters",
    "assign_clusters": "clusters",
    "choose_index_spec": "spec",
    "cluster_counts": "clusters",
    "clusters_table": "clusters",
    "exact_duplicate_groups": "duplicates",
    "expand_from_seeds": "expansion",
    "faiss_gpu_available": "device",
    "find_near_duplicates": "duplicates",
    "index_ids": "ids",
    "kmeans_clusters": "clusters",
    "near_duplicate_groups": "duplicates",
    "outlier_scores": "outliers",
    "resolve_faiss_device": "device",
    "row_labels": "ids",
    "similar_pairs": "duplicates",
    "split_index_ids": "ids",
    "train_kmeans": "clusters",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"audit.neighbours.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_WHERE)
