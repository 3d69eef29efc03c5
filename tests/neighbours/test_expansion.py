from __future__ import annotations

import numpy as np
import pytest

from audit.neighbours.expansion import expand_from_seeds
from audit.neighbours.schemas import NEAR_FLAGGED_SCHEMA


def test_radius_expansion_from_a_planted_seed_finds_its_copies_and_not_far_items(
    any_index, corpus, vectors, ids, keys, min_similarity
) -> None:
    for group in corpus.groups[:10]:
        seed = group[:1]
        table = expand_from_seeds(any_index, vectors[seed], ids[seed], keys, min_similarity=min_similarity)
        assert table.schema == NEAR_FLAGGED_SCHEMA
        assert sorted(table["key"].to_pylist()) == sorted(keys(ids[group[1:]]).to_pylist())
        assert set(table["seed_key"].to_pylist()) == set(keys(ids[seed]).to_pylist())
        assert set(table["reason"].to_pylist()) == {"near-flagged"}


def test_top_k_expansion_leaves_out_the_seeds_and_keeps_k_per_seed(
    any_index, corpus, vectors, ids, keys
) -> None:
    group = next(g for g in corpus.groups if len(g) >= 3)
    seeds = group[:2]
    table = expand_from_seeds(any_index, vectors[seeds], ids[seeds], keys, k=3)
    seed_keys = set(keys(ids[seeds]).to_pylist())
    assert not seed_keys & set(table["key"].to_pylist())
    assert set(table["seed_key"].to_pylist()) <= seed_keys and table.num_rows <= 6
    assert set(keys(ids[group[2:]]).to_pylist()) <= set(table["key"].to_pylist())
    sims = table["similarity"].to_numpy()
    assert np.all(np.diff(sims) <= 0)  # most similar first
    outlier_keys = set(keys(ids[corpus.outlier_rows]).to_pylist())
    assert not outlier_keys & set(table["key"].to_pylist())


def test_top_k_with_a_threshold_keeps_only_close_items(
    any_index, corpus, vectors, ids, keys, min_similarity
) -> None:
    group = corpus.groups[0]
    seed = group[:1]
    table = expand_from_seeds(any_index, vectors[seed], ids[seed], keys, k=50, min_similarity=min_similarity)
    assert sorted(table["key"].to_pylist()) == sorted(keys(ids[group[1:]]).to_pylist())


def test_an_item_near_two_seeds_appears_once_with_its_closest_seed(flat_index, vectors, ids, keys) -> None:
    item = 100
    a = vectors[item] + 0.05 * vectors[200]
    b = vectors[item] + 0.20 * vectors[200]
    seeds = np.stack([b, a])
    table = expand_from_seeds(flat_index, seeds, ids[[200, 300]], keys, min_similarity=0.9)
    # seed ids stand for the two seed vectors; 200 and 300 are left out as seeds
    rows = {r["key"]: r for r in table.to_pylist()}
    key = keys(ids[[item]]).to_pylist()[0]
    assert rows[key]["seed_key"] == keys(ids[[300]]).to_pylist()[0]
    assert list(table["key"].to_pylist()).count(key) == 1


def test_expansion_needs_a_radius_or_k(flat_index, vectors, ids, keys) -> None:
    with pytest.raises(ValueError, match="min_similarity, k or both"):
        expand_from_seeds(flat_index, vectors[:1], ids[:1], keys)
    assert expand_from_seeds(flat_index, vectors[:0], ids[:0], keys, k=3).num_rows == 0
