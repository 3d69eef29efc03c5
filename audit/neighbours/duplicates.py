"""Duplicate groups: exact (same image hash) and semantic (cosine >= a threshold on image or caption
embeddings), joined into groups by connected components.

Each group has one representative: for semantic groups the member with the most near-duplicate edges
(the hub that the copies were most likely made from), ties to the earliest row; for exact groups the
first row (in the corpus' order, the earliest copy). Both choices are deterministic, so a rerun gives
the same table. Transitive joining can chain items that are not themselves similar (A~B, B~C); each
member's similarity says how close it is. Members and representatives are named by ``row_id`` (keys
may repeat across shards), with their ``key`` beside it as a label.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.neighbours.components import Groups, edge_groups, hash_groups
from audit.neighbours.ids import RowLookup, row_labels
from audit.neighbours.index import NeighbourIndex
from audit.neighbours.results import Neighbours, RangeNeighbours
from audit.neighbours.schemas import DUPLICATE_KINDS, DUPLICATES_SCHEMA, to_arrow


@dataclass(frozen=True)
class SimilarPairs:
    """Undirected pairs of row ids (a < b), each once, with the highest similarity seen for the pair."""

    a: np.ndarray  # int64
    b: np.ndarray  # int64
    similarity: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.a)

    @classmethod
    def of(cls, a: np.ndarray, b: np.ndarray, similarity: np.ndarray) -> SimilarPairs:
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        sim = np.asarray(similarity, np.float32)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        keep = lo != hi
        lo, hi, sim = lo[keep], hi[keep], sim[keep]
        # A pair is usually found from both ends (and from several shards): keep it once, at its best.
        order = np.lexsort((-sim, hi, lo))
        lo, hi, sim = lo[order], hi[order], sim[order]
        first = np.ones(len(lo), bool)
        first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
        return cls(lo[first], hi[first], sim[first])

    @classmethod
    def concat(cls, parts: Iterable[SimilarPairs]) -> SimilarPairs:
        parts = list(parts)
        if not parts:
            return cls.of(np.empty(0), np.empty(0), np.empty(0))
        return cls.of(
            np.concatenate([p.a for p in parts]),
            np.concatenate([p.b for p in parts]),
            np.concatenate([p.similarity for p in parts]),
        )


def similar_pairs(
    query_ids: np.ndarray, neighbours: Neighbours | RangeNeighbours, min_similarity: float
) -> SimilarPairs:
    """Pairs (query, neighbour) at cosine >= min_similarity from one shard's search, without self-matches."""
    query_ids = np.asarray(query_ids, np.int64)
    if isinstance(neighbours, RangeNeighbours):
        a, b, sim = query_ids[neighbours.query_index], neighbours.ids, neighbours.similarities
    else:
        a = np.broadcast_to(query_ids[:, None], neighbours.ids.shape)
        b, sim = neighbours.ids, neighbours.similarities
    keep = (b >= 0) & (sim >= min_similarity)
    return SimilarPairs.of(a[keep], b[keep], sim[keep])


def find_near_duplicates(
    index: NeighbourIndex,
    vectors: np.ndarray,
    ids: np.ndarray,
    *,
    min_similarity: float = 0.95,
    k: int = 8,
    nprobe: int | None = None,
) -> SimilarPairs:
    """One shard's near-duplicate pairs against the whole index: kNN with a small k, then the threshold.
    (A k-th neighbour still above the threshold means a group larger than k; its members still join
    through the pairs each of them finds.)"""
    return similar_pairs(ids, index.search(vectors, k, nprobe=nprobe), min_similarity)


def near_duplicate_groups(
    pairs: SimilarPairs | Sequence[SimilarPairs], rows: RowLookup, *, kind: str = "image"
) -> pa.Table:
    """Connected components of the pair graph as a DUPLICATES_SCHEMA table (kind 'image' or 'caption'),
    in memory; the pipeline streams the same grouping (``edge_groups``) over spilled buckets."""
    if kind not in DUPLICATE_KINDS[1:]:
        raise ValueError(f"near-duplicate kind must be one of {DUPLICATE_KINDS[1:]}, got {kind!r}")
    pairs = pairs if isinstance(pairs, SimilarPairs) else SimilarPairs.concat(pairs)
    if not len(pairs):
        return DUPLICATES_SCHEMA.empty_table()
    nodes = np.unique(np.concatenate([pairs.a, pairs.b]))  # sorted: positions keep the id order
    a, b = np.searchsorted(nodes, pairs.a), np.searchsorted(nodes, pairs.b)
    groups = edge_groups(lambda: [(a, b, pairs.similarity)], len(nodes))
    return groups_table(groups, rows(nodes[groups.node]), rows(nodes[groups.representative]), kind)


def groups_table(
    groups: Groups, members: pa.Table, representatives: pa.Table, kind: str, *, grouped: bool = True
) -> pa.Table:
    """DUPLICATES_SCHEMA rows by group, representative first (or, not ``grouped``, in node order);
    ``members`` and ``representatives`` are the row labels (row_id, key) of ``groups.node`` and
    ``groups.representative``."""
    order = groups.grouped_order() if grouped else np.arange(len(groups))
    take = pa.array(order)
    return pa.table(
        {
            "row_id": members.column("row_id").take(take),
            "key": members.column("key").take(take),
            "group": pa.array(groups.group[order]),
            "representative_row_id": representatives.column("row_id").take(take),
            "representative_key": representatives.column("key").take(take),
            "similarity": pa.array(groups.similarity[order]),
            "kind": pa.array([kind] * len(groups), pa.string()),
        },
        schema=DUPLICATES_SCHEMA,
    )


HASH_RECORD = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("node", "<i8")])


def hash_records(hashes: pa.Array | pa.ChunkedArray, nodes: np.ndarray) -> np.ndarray:
    """HASH_RECORD rows of the usable hashes (null and empty ones skipped), compared case-insensitively
    through a 128-bit digest of the hash text."""
    values = pc.utf8_lower(hashes).to_pylist()
    keep = [i for i, v in enumerate(values) if v]
    digests = b"".join(hashlib.blake2b(values[i].encode(), digest_size=16).digest() for i in keep)
    halves = np.frombuffer(digests, "<u8").reshape(-1, 2) if keep else np.zeros((0, 2), np.uint64)
    rec = np.empty(len(keep), HASH_RECORD)
    rec["hi"], rec["lo"], rec["node"] = halves[:, 0], halves[:, 1], np.asarray(nodes)[keep]
    return rec


def exact_duplicate_groups(
    row_ids: Sequence[str] | pa.Array | pa.ChunkedArray,
    keys: Sequence[str] | pa.Array | pa.ChunkedArray,
    hashes: Sequence[str] | pa.Array | pa.ChunkedArray,
) -> pa.Table:
    """Rows sharing an image hash (e.g. sha256 hex, compared case-insensitively); null or empty hashes
    are skipped. Rows are told apart by row id, never by key. Representative: the group's first row
    in the given order."""
    labels, hashes = row_labels(row_ids, keys), to_arrow(hashes, pa.string())
    if labels.num_rows != len(hashes):
        raise ValueError(f"{labels.num_rows} rows but {len(hashes)} hashes")
    groups = hash_groups([hash_records(hashes, np.arange(len(hashes)))])
    return groups_table(groups, labels.take(pa.array(groups.node)),
                        labels.take(pa.array(groups.representative)), "exact")  # fmt: skip
