"""Streamed duplicate grouping: buckets on disk, union-find across buckets, hash groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from audit.neighbours.components import edge_groups, hash_groups
from audit.neighbours.duplicates import HASH_RECORD, SimilarPairs
from audit.neighbours.spill import SpillBuckets, bucket_count, mix64

PAIR = np.dtype([("a", "<i8"), ("b", "<i8"), ("similarity", "<f4")])


def _random_pairs(rng: np.random.Generator, n: int, m: int) -> SimilarPairs:
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    return SimilarPairs.of(a, b, rng.uniform(0.9, 1.0, m).astype(np.float32))


def _spilled_passes(spill: SpillBuckets):
    def passes():
        for rec in spill:
            p = SimilarPairs.of(rec["a"], rec["b"], rec["similarity"])
            yield p.a, p.b, p.similarity

    return passes


@pytest.mark.parametrize("n_buckets", [1, 7, 64])
def test_groups_from_many_buckets_equal_one_pass_over_all_edges(tmp_path: Path, n_buckets: int) -> None:
    rng = np.random.default_rng(3)
    n = 2_000
    pairs = _random_pairs(rng, n, 1_500)
    whole = edge_groups(lambda: [(pairs.a, pairs.b, pairs.similarity)], n)
    # every pair twice (found from both ends, by different shards), with different similarities
    with SpillBuckets(PAIR, n_buckets, scratch=str(tmp_path)) as spill:
        for sims in (pairs.similarity, pairs.similarity - 0.01):
            rec = np.empty(len(pairs), PAIR)
            rec["a"], rec["b"], rec["similarity"] = pairs.a, pairs.b, sims
            spill.add(rec, mix64(rec["a"], rec["b"]))
        streamed = edge_groups(_spilled_passes(spill), n)
    for field in ("node", "group", "representative", "similarity"):
        np.testing.assert_array_equal(getattr(streamed, field), getattr(whole, field), err_msg=field)
    # the components are the graph's connected components
    graph = coo_matrix((np.ones(len(pairs)), (pairs.a, pairs.b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    node = whole.node
    assert (
        len(set(zip(comp[node], whole.group, strict=True))) == len(set(whole.group)) == len(set(comp[node]))
    )
    assert not list(tmp_path.iterdir())  # the spill folder is gone


def test_a_long_chain_split_over_buckets_is_one_group() -> None:
    n = 500
    a = np.arange(n - 1)
    chain = SimilarPairs.of(a, a + 1, np.full(n - 1, 0.99, np.float32))
    buckets = [(chain.a[i::13], chain.b[i::13], chain.similarity[i::13]) for i in range(13)]
    groups = edge_groups(lambda: buckets, n)
    assert len(groups) == n and set(groups.group.tolist()) == {0}
    assert groups.representative[0] == 1  # every inner node has 2 edges: the smallest of them


def test_spill_keeps_records_of_one_hash_in_one_bucket_and_loses_none() -> None:
    rng = np.random.default_rng(0)
    rec = np.empty(10_000, HASH_RECORD)
    rec["hi"] = rng.integers(0, 50, len(rec)).astype(np.uint64)
    rec["lo"], rec["node"] = rec["hi"] * 3, np.arange(len(rec))
    with SpillBuckets(HASH_RECORD, 8) as spill:
        spill.add(rec[:6000], rec["hi"][:6000])
        spill.add(rec[6000:], rec["hi"][6000:])
        buckets = list(spill)
    assert sum(len(b) for b in buckets) == len(rec) == spill.records
    seen: dict[int, int] = {}
    for i, b in enumerate(buckets):
        for h in set(b["hi"].tolist()):
            assert seen.setdefault(h, i) == i
    assert sorted(np.concatenate([b["node"] for b in buckets]).tolist()) == list(range(len(rec)))


def test_hash_groups_across_buckets_pick_the_smallest_node() -> None:
    rec = np.zeros(6, HASH_RECORD)
    rec["hi"] = [5, 9, 5, 9, 7, 5]
    rec["node"] = [10, 4, 2, 8, 6, 3]
    groups = hash_groups([rec[rec["hi"] == 5], rec[rec["hi"] != 5]])
    assert groups.node.tolist() == [2, 3, 4, 8, 10]
    assert groups.representative.tolist() == [2, 2, 4, 4, 2]
    assert groups.group.tolist() == [0, 0, 1, 1, 0]  # numbered in representative order
    assert (groups.similarity == 1).all()


def test_bucket_count_grows_with_records_up_to_a_limit() -> None:
    assert bucket_count(0) == 1 and bucket_count(10, bucket_records=4) == 3
    assert bucket_count(10**12) == 4096


def test_spill_folder_follows_dask_temporary_directory_and_is_removed(tmp_path: Path) -> None:
    import dask.config

    rec = np.zeros(3, HASH_RECORD)
    with dask.config.set({"temporary-directory": str(tmp_path)}), SpillBuckets(HASH_RECORD, 5000) as spill:
        spill.add(rec, np.arange(3, dtype=np.uint64))
        [folder] = list(tmp_path.iterdir())
        assert folder.name.startswith("mmaudit-spill-") and len(list(folder.iterdir())) == 3
        assert sum(len(b) for b in spill) == 3  # 5000 buckets: only the touched ones exist as files
    assert not list(tmp_path.iterdir())
