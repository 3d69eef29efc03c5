"""Arrow schemas of the neighbourhood outputs (to move into schemas/outputs.py).

duplicates.parquet: one row per member of a duplicate group; a row may sit in one group per kind.
clusters.parquet:   one row per k-means cluster with its flag rate and top concepts.
near-flagged rows:  kNN expansion from seed (flagged) items, one row per found item.

Rows are named by ``row_id`` (corpus-unique, ``<shard_id>:<row_index>``); ``key`` beside it is the
dataset's own label, which may repeat across shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = "1"
DUPLICATE_KINDS = ("exact", "image", "caption")
NEAR_FLAGGED_REASON = "near-flagged"


def _versioned(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={"mmaudit.schema": name, "mmaudit.version": SCHEMA_VERSION})


DUPLICATES_SCHEMA = _versioned(
    "duplicates",
    [
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        # Numbered 0.. within a kind, in order of the representative: (kind, group) names a group.
        pa.field("group", pa.int64(), nullable=False),
        pa.field("representative_row_id", pa.string(), nullable=False),
        pa.field("representative_key", pa.string(), nullable=False),
        # Cosine to the representative where that pair was found, else the member's strongest edge;
        # 1.0 for exact (hash) duplicates.
        pa.field("similarity", pa.float32(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # exact | image | caption
    ],
)

# Additive per-shard partial counts: concatenate shards' tables, then clusters_table() them.
CLUSTER_COUNTS_SCHEMA = _versioned(
    "cluster_counts",
    [
        pa.field("cluster", pa.int32(), nullable=False),
        pa.field("concept", pa.string()),  # null: no concept given for those rows
        pa.field("n_rows", pa.int64(), nullable=False),
        pa.field("n_flagged", pa.int64(), nullable=False),
    ],
)

CLUSTERS_SCHEMA = _versioned(
    "clusters",
    [
        pa.field("cluster", pa.int32(), nullable=False),
        pa.field("n_rows", pa.int64(), nullable=False),
        pa.field("n_flagged", pa.int64(), nullable=False),
        pa.field("flag_rate", pa.float64(), nullable=False),
        # Most frequent per-row top concepts in the cluster, most frequent first, with their row counts.
        pa.field("top_concepts", pa.list_(pa.string()), nullable=False),
        pa.field("top_concept_counts", pa.list_(pa.int64()), nullable=False),
    ],
)

NEAR_FLAGGED_SCHEMA = _versioned(
    "near_flagged",
    [
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("seed_row_id", pa.string(), nullable=False),  # the most similar seed
        pa.field("seed_key", pa.string(), nullable=False),
        pa.field("similarity", pa.float32(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),  # always "near-flagged"
    ],
)

# Per-row columns for the scores tables.
NEIGHBOUR_ROW_FIELDS: list[pa.Field] = [
    pa.field("cluster", pa.int32()),
    pa.field("cluster_similarity", pa.float32()),  # cosine to the cluster centroid
    pa.field("outlier_score", pa.float32()),  # cosine distance to the k-th nearest other row, 0..2
]


def to_arrow(values: Sequence[Any] | pa.Array | pa.ChunkedArray, typ: pa.DataType) -> pa.Array:
    """One contiguous Arrow array of the given type from a list, NumPy array, Arrow array or table column."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.cast(typ) if isinstance(values, pa.Array) else pa.array(values, typ)
