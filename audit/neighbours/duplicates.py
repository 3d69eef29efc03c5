"""Duplicate groups: exact (same image hash) and semantic (cosine >= a threshold on image or caption
embeddings), joined into groups by connected components.

Each group has one representative: for semantic groups the member with the most near-duplicate edges
(the hub that the copies were most likely made from), ties to the smallest row id; for exact groups the
smallest key. Both choices are deterministic, so a rerun gives the same table. Transitive joining can
chain items that are not themselves similar (A~B, B~C); each member's similarity says how close it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from audit.neighbours.ids import KeyLookup
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
    pairs: SimilarPairs | Sequence[SimilarPairs], keys: KeyLookup, *, kind: str = "image"
) -> pa.Table:
    """Connected components of the pair graph as a DUPLICATES_SCHEMA table (kind 'image' or 'caption')."""
    if kind not in DUPLICATE_KINDS[1:]:
        raise ValueError(f"near-duplicate kind must be one of {DUPLICATE_KINDS[1:]}, got {kind!r}")
    pairs = pairs if isinstance(pairs, SimilarPairs) else SimilarPairs.concat(pairs)
    if not len(pairs):
        return DUPLICATES_SCHEMA.empty_table()
    nodes, inverse = np.unique(np.concatenate([pairs.a, pairs.b]), return_inverse=True)
    ia, ib = inverse[: len(pairs)], inverse[len(pairs) :]
    n = len(nodes)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (ia, ib)), shape=(n, n))
    _, component = connected_components(graph, directed=False)

    degree = np.bincount(ia, minlength=n) + np.bincount(ib, minlength=n)
    # nodes are sorted by id, so position breaks degree ties towards the smallest id.
    by_rank = np.lexsort((np.arange(n), -degree, component))
    is_first = np.ones(n, bool)
    is_first[1:] = component[by_rank][1:] != component[by_rank][:-1]
    rep_of_component = by_rank[is_first]  # component c -> node position of its representative
    rep = rep_of_component[component]

    strongest = np.full(n, -np.inf, np.float32)
    np.maximum.at(strongest, ia, pairs.similarity)
    np.maximum.at(strongest, ib, pairs.similarity)
    to_rep = np.full(n, np.nan, np.float32)
    a_to_rep, b_to_rep = rep[ia] == ib, rep[ib] == ia
    to_rep[ia[a_to_rep]] = pairs.similarity[a_to_rep]
    to_rep[ib[b_to_rep]] = pairs.similarity[b_to_rep]
    similarity = np.where(np.isnan(to_rep), strongest, to_rep)

    group_of_component = np.argsort(np.argsort(rep_of_component, kind="stable"), kind="stable")
    group = group_of_component[component].astype(np.int64)
    order = np.lexsort((np.arange(n), rep != np.arange(n), group))
    node_keys = keys(nodes[order])
    rep_keys = keys(nodes[rep[order]])
    return pa.table(
        {
            "key": node_keys,
            "group": pa.array(group[order]),
            "representative": rep_keys,
            "similarity": pa.array(similarity[order]),
            "kind": pa.array([kind] * n, pa.string()),
        },
        schema=DUPLICATES_SCHEMA,
    )


def exact_duplicate_groups(
    keys: Sequence[str] | pa.Array | pa.ChunkedArray, hashes: Sequence[str] | pa.Array | pa.ChunkedArray
) -> pa.Table:
    """Rows sharing an image hash (e.g. sha256 hex, compared case-insensitively); null or empty hashes
    are skipped. Representative: the smallest key of the group."""
    keys, hashes = to_arrow(keys, pa.string()), to_arrow(hashes, pa.string())
    if len(keys) != len(hashes):
        raise ValueError(f"{len(keys)} keys but {len(hashes)} hashes")
    t = pa.table({"key": keys, "hash": pc.utf8_lower(hashes)})
    usable = pc.and_(pc.and_(pc.is_valid(t["hash"]), pc.not_equal(t["hash"], "")), pc.is_valid(t["key"]))
    t = t.filter(pc.fill_null(usable, False))
    t = t.sort_by([("hash", "ascending"), ("key", "ascending")])
    n = t.num_rows
    if n < 2:
        return DUPLICATES_SCHEMA.empty_table()
    h = t["hash"].combine_chunks()
    starts = np.ones(n, bool)
    starts[1:] = pc.not_equal(h.slice(1), h.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    run = np.cumsum(starts) - 1
    first_of_run = np.flatnonzero(starts)
    member = np.flatnonzero(np.bincount(run)[run] >= 2)
    if not member.size:
        return DUPLICATES_SCHEMA.empty_table()
    key = t["key"].combine_chunks()
    runs = np.unique(run[member])
    rep_keys = key.take(pa.array(first_of_run[runs]))
    group_of_run = np.zeros(len(first_of_run), np.int64)
    group_of_run[runs] = np.argsort(pc.sort_indices(rep_keys).to_numpy(), kind="stable")
    group = group_of_run[run[member]]
    order = np.lexsort((member, group))  # by group, then key (rows are key-sorted within a hash)
    rows = member[order]
    return pa.table(
        {
            "key": key.take(pa.array(rows)),
            "group": pa.array(group[order]),
            "representative": key.take(pa.array(first_of_run[run[rows]])),
            "similarity": pa.array(np.ones(len(rows), np.float32)),
            "kind": pa.array(["exact"] * len(rows), pa.string()),
        },
        schema=DUPLICATES_SCHEMA,
    )
