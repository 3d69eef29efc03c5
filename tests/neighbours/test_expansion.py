from __future__ import annotations

import numpy as np
import pytest

from audit.neighbours.expansion import expand_from_seeds
from audit.neighbours.schemas import NEAR_FLAGGED_SCHEMA


def _row_ids(rows, ids: np.ndarray) -> list[str]:
    return rows(ids).column("row_id").to_pylist()


def test_radius_expansion_from_a_planted_seed_finds_its_copies_and_not_far_items(
    any_index, corpus, vectors, ids, rows, min_similarity
) -> None:
    for group in corpus.groups[:10]:
        seed = group[:1]
        table = expand_from_seeds(any_index, vectors[seed], ids[seed], rows, min_similarity=min_similarity)
        assert table.schema == NEAR_FLAGGED_SCHEMA
        assert sorted(table["row_id"].to_pylist()) == sorted(_row_ids(rows, ids[group[1:]]))
        labels = rows(ids[group[1:]])
        key_of = dict(zip(labels.column("row_id").to_pylist(), labels.column("key").to_pylist(), strict=True))
        assert table["key"].to_pylist() == [key_of[r] for r in table["row_id"].to_pylist()]
        assert set(table["seed_row_id"].to_pylist()) == set(_row_ids(rows, ids[seed]))
        assert set(table["seed_key"].to_pylist()) == set(rows(ids[seed]).column("key").to_pylist())
        assert set(table["reason"].to_pylist()) == {"near-flagged"}


def test_top_k_expansion_leaves_out_the_seeds_and_keeps_k_per_seed(
    any_index, corpus, vectors, ids, rows
) -> None:
    group = next(g for g in corpus.groups if len(g) >= 3)
    seeds = group[:2]
    table = expand_from_seeds(any_index, vectors[seeds], ids[seeds], rows, k=3)
    seed_rows = set(_row_ids(rows, ids[seeds]))
    assert not seed_rows & set(table["row_id"].to_pylist())
    assert set(table["seed_row_id"].to_pylist()) <= seed_rows and table.num_rows <= 6
    assert set(_row_ids(rows, ids[group[2:]])) <= set(table["row_id"].to_pylist())
    sims = table["similarity"].to_numpy()
    assert np.all(np.diff(sims) <= 0)  # most similar first
    assert not set(_row_ids(rows, ids[corpus.outlier_rows])) & set(table["row_id"].to_pylist())


def test_top_k_with_a_threshold_keeps_only_close_items(
    any_index, corpus, vectors, ids, rows, min_similarity
) -> None:
    group = corpus.groups[0]
    seed = group[:1]
    table = expand_from_seeds(any_index, vectors[seed], ids[seed], rows, k=50, min_similarity=min_similarity)
    assert sorted(table["row_id"].to_pylist()) == sorted(_row_ids(rows, ids[group[1:]]))


def test_an_item_near_two_seeds_appears_once_with_its_closest_seed(flat_index, vectors, ids, rows) -> None:
    item = 100
    a = vectors[item] + 0.05 * vectors[200]
    b = vectors[item] + 0.20 * vectors[200]
    seeds = np.stack([b, a])
    table = expand_from_seeds(flat_index, seeds, ids[[200, 300]], rows, min_similarity=0.9)
    # seed ids stand for the two seed vectors; 200 and 300 are left out as seeds
    found = {r["row_id"]: r for r in table.to_pylist()}
    [row_id] = _row_ids(rows, ids[[item]])
    assert found[row_id]["seed_row_id"] == _row_ids(rows, ids[[300]])[0]
    assert list(table["row_id"].to_pylist()).count(row_id) == 1


def test_a_row_sharing_the_seeds_key_in_another_shard_is_not_taken_for_the_seed(
    flat_index, vectors, ids, rows
) -> None:
    # row 7 of shards 0 and 1 carry the same key (each shard numbers its keys from 0); the seed
    # is row 7, with the other row's vector: that row is found, not left out as the seed
    seed, [namesake] = 7, np.flatnonzero(ids == (1 << 32 | 7))
    assert rows(ids[[seed]]).column("key").equals(rows(ids[[namesake]]).column("key"))
    table = expand_from_seeds(flat_index, vectors[[namesake]], ids[[seed]], rows, k=1)
    assert table.to_pylist()[0]["row_id"] == _row_ids(rows, ids[[namesake]])[0]
    assert table.to_pylist()[0]["seed_row_id"] == _row_ids(rows, ids[[seed]])[0]
    assert table.to_pylist()[0]["key"] == table.to_pylist()[0]["seed_key"]


def test_expansion_needs_a_radius_or_k(flat_index, vectors, ids, rows) -> None:
    with pytest.raises(ValueError, match="min_similarity, k or both"):
        expand_from_seeds(flat_index, vectors[:1], ids[:1], rows)
    assert expand_from_seeds(flat_index, vectors[:0], ids[:0], rows, k=3).num_rows == 0
