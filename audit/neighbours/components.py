"""Duplicate groups as integer arrays over dense node positions ``0..n-1``, built from edges or hashes
that arrive bucket by bucket (see ``spill``), so a corpus-wide grouping never holds all edges at once.

Memory: about 16 bytes per node (union-find parent, degree, strongest edge) plus one bucket of edges;
the result holds only the nodes that are in a group. Keys are attached later, shard by shard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Each call yields the same edges again (two passes), deduplicated within each bucket: (a, b, similarity)
# with a < b in dense positions, every pair in exactly one bucket.
EdgePasses = Callable[[], Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class Groups:
    """One row per grouped node, sorted by node. Groups are numbered 0.. in order of their
    representative's position."""

    node: np.ndarray  # int64
    group: np.ndarray  # int64
    representative: np.ndarray  # int64 (a node)
    similarity: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.node)

    @classmethod
    def empty(cls) -> Groups:
        z = np.zeros(0, np.int64)
        return cls(z, z, z, np.zeros(0, np.float32))

    def rows(self, start: int, stop: int) -> Groups:
        return Groups(*(a[start:stop] for a in (self.node, self.group, self.representative, self.similarity)))

    def grouped_order(self) -> np.ndarray:
        """Row order by group, representative first, then node."""
        return np.lexsort((self.node, self.representative != self.node, self.group))


def _find(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
    root = parent[x]
    while True:
        up = parent[root]
        if np.array_equal(up, root):
            return root
        root = up


def _union(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Join the trees of every edge in one step: components of the edges between current roots, each
    linked straight to its smallest root, so trees stay shallow across buckets."""
    ra, rb = _find(parent, a), _find(parent, b)
    link = ra != rb
    if not link.any():
        return
    m = int(link.sum())
    roots, inverse = np.unique(np.concatenate([ra[link], rb[link]]), return_inverse=True)
    graph = coo_matrix((np.ones(m, np.int8), (inverse[:m], inverse[m:])), shape=(len(roots), len(roots)))
    _, comp = connected_components(graph, directed=False)
    _, first = np.unique(comp, return_index=True)  # roots are sorted: the first of a component is its min
    parent[roots] = roots[first][comp]


def _group_numbers(representative: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.unique(representative), representative).astype(np.int64)


def edge_groups(passes: EdgePasses, n: int) -> Groups:
    """Connected components of the edge graph. Representative: the member with the most edges (the hub
    the copies were most likely made from), ties to the smallest position. A member's similarity is its
    edge to the representative when there is one, else its strongest edge."""
    parent = np.arange(n, dtype=np.int64)
    degree = np.zeros(n, np.int32)
    strongest = np.full(n, -np.inf, np.float32)
    for a, b, sim in passes():
        if not len(a):
            continue
        for ends in (a, b):
            nodes, counts = np.unique(ends, return_counts=True)
            degree[nodes] += counts.astype(np.int32)
            np.maximum.at(strongest, ends, sim)
        _union(parent, a, b)
        parent[a], parent[b] = _find(parent, a), _find(parent, b)  # compress: trees stay shallow
    node = np.flatnonzero(degree).astype(np.int64)
    if not len(node):
        return Groups.empty()
    comp = _find(parent, node)
    order = np.lexsort((node, -degree[node], comp))
    first = np.ones(len(node), bool)
    first[1:] = comp[order][1:] != comp[order][:-1]
    roots, reps = comp[order][first], node[order][first]  # roots ascending
    rep = reps[np.searchsorted(roots, comp)]

    to_rep = np.full(len(node), np.nan, np.float32)
    for a, b, sim in passes():  # second pass: the similarity of each member's edge to its representative
        ia, ib = np.searchsorted(node, a), np.searchsorted(node, b)
        hit = rep[ia] == b
        to_rep[ia[hit]] = sim[hit]
        hit = rep[ib] == a
        to_rep[ib[hit]] = sim[hit]
    similarity = np.where(np.isnan(to_rep), strongest[node], to_rep).astype(np.float32)
    return Groups(node, _group_numbers(rep), rep, similarity)


def hash_groups(buckets: Iterable[np.ndarray]) -> Groups:
    """Nodes sharing a 128-bit hash. ``buckets`` yield records with fields ``hi``, ``lo`` (the hash) and
    ``node``; all records of one hash are in one bucket. Representative: the smallest node; similarity 1."""
    nodes, reps = [], []
    for rec in buckets:
        if len(rec) < 2:
            continue
        rec = rec[np.lexsort((rec["node"], rec["lo"], rec["hi"]))]
        starts = np.ones(len(rec), bool)
        starts[1:] = (rec["hi"][1:] != rec["hi"][:-1]) | (rec["lo"][1:] != rec["lo"][:-1])
        run = np.cumsum(starts) - 1
        member = np.bincount(run)[run] >= 2
        nodes.append(rec["node"][member])
        reps.append(rec["node"][np.flatnonzero(starts)][run[member]])
    if not nodes or not sum(map(len, nodes)):
        return Groups.empty()
    node, rep = np.concatenate(nodes).astype(np.int64), np.concatenate(reps).astype(np.int64)
    order = np.argsort(node, kind="stable")
    node, rep = node[order], rep[order]
    return Groups(node, _group_numbers(rep), rep, np.ones(len(node), np.float32))
