from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from audit.neighbours.duplicates import (
    SimilarPairs,
    exact_duplicate_groups,
    find_near_duplicates,
    near_duplicate_groups,
)
from audit.neighbours.ids import RowTable
from audit.neighbours.schemas import DUPLICATES_SCHEMA

# Rows a..j all under one key: groups follow row ids, never keys.
LETTERS = RowTable(np.arange(10), list("abcdefghij"), ["000000000"] * 10)


def _groups(table: pa.Table) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for row in table.to_pylist():
        out.setdefault(row["group"], set()).add(row["row_id"])
    return out


def test_planted_near_duplicates_form_their_groups(
    any_index, corpus, vectors, ids, rows, min_similarity
) -> None:
    shards = [slice(s, s + 4_000) for s in range(0, len(ids), 4_000)]
    pairs = [
        find_near_duplicates(any_index, vectors[s], ids[s], min_similarity=min_similarity) for s in shards
    ]
    table = near_duplicate_groups(pairs, rows, kind="image")
    assert table.schema == DUPLICATES_SCHEMA
    planted = sorted(sorted(rows(ids[g]).column("row_id").to_pylist()) for g in corpus.groups)
    assert sorted(sorted(m) for m in _groups(table).values()) == planted
    every = rows(ids)
    labels = dict(zip(every.column("row_id").to_pylist(), every.column("key").to_pylist(), strict=True))
    for row in table.to_pylist():
        assert row["kind"] == "image" and row["similarity"] >= min_similarity
        assert row["representative_row_id"] in _groups(table)[row["group"]]
        assert row["key"] == labels[row["row_id"]]
        assert row["representative_key"] == labels[row["representative_row_id"]]


def test_representative_is_the_member_with_most_edges_ties_to_smallest_id() -> None:
    # a star around d (3 edges) and a separate pair g-h (tie: g has the smaller id)
    pairs = SimilarPairs.of(
        np.array([3, 3, 3, 6]), np.array([0, 1, 2, 7]), np.array([0.97, 0.96, 0.99, 0.98])
    )
    table = near_duplicate_groups(pairs, LETTERS, kind="image")
    rows = {r["row_id"]: r for r in table.to_pylist()}
    assert {k: r["representative_row_id"] for k, r in rows.items()} == {
        "a": "d", "b": "d", "c": "d", "d": "d", "g": "g", "h": "g",
    }  # fmt: skip
    assert [r["row_id"] for r in table.to_pylist()] == ["d", "a", "b", "c", "g", "h"]  # representative first
    assert (
        {r["key"] for r in table.to_pylist()}
        == {r["representative_key"] for r in rows.values()}
        == {"000000000"}
    )
    assert rows["a"]["similarity"] == pytest.approx(0.97) and rows["d"]["similarity"] == pytest.approx(0.99)
    assert (rows["a"]["group"], rows["g"]["group"]) == (0, 1)


def test_a_chained_member_reports_its_strongest_edge() -> None:
    # chain a-b-c-d: b and c have two edges each, so b (the smaller id) represents; d is not linked to b
    pairs = SimilarPairs.of(np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([0.99, 0.95, 0.97]))
    rows = {r["row_id"]: r for r in near_duplicate_groups(pairs, LETTERS, kind="caption").to_pylist()}
    assert {r["representative_row_id"] for r in rows.values()} == {"b"}
    assert rows["d"]["similarity"] == pytest.approx(0.97)  # not linked to b directly: its strongest edge
    assert rows["c"]["similarity"] == pytest.approx(0.95)  # linked to b directly
    assert {r["kind"] for r in rows.values()} == {"caption"}


def test_a_pair_found_from_both_ends_and_in_two_shards_counts_once_at_its_best() -> None:
    a = SimilarPairs.of(np.array([5, 2]), np.array([2, 5]), np.array([0.96, 0.97]))
    b = SimilarPairs.of(np.array([2, 4]), np.array([5, 4]), np.array([0.95, 1.0]))  # 4-4 is a self-match
    merged = SimilarPairs.concat([a, b])
    assert (merged.a.tolist(), merged.b.tolist()) == ([2], [5])
    assert merged.similarity.tolist() == pytest.approx([0.97])


def test_no_pairs_give_an_empty_table_with_the_schema() -> None:
    assert near_duplicate_groups([], LETTERS).equals(DUPLICATES_SCHEMA.empty_table())
    with pytest.raises(ValueError, match="kind"):
        near_duplicate_groups([], LETTERS, kind="exact")


def test_exact_hash_duplicates_group_by_hash() -> None:
    row_ids = ["s:5", "s:2", "s:9", "s:1", "s:7", "s:3", "s:8"]
    keys = ["k5", "k2", "k9", "k1", "k7", "k3", "k8"]
    hashes = ["AB12", "ab12", None, "ff00", "ff00", "", "ab12"]
    table = exact_duplicate_groups(row_ids, keys, hashes)
    assert table.schema == DUPLICATES_SCHEMA
    # groups by the first row that has each hash (s:5, then s:1); members in row order
    rep5 = {"group": 0, "representative_row_id": "s:5", "representative_key": "k5"}
    rep1 = {"group": 1, "representative_row_id": "s:1", "representative_key": "k1"}
    same = {"similarity": 1.0, "kind": "exact"}
    assert table.to_pylist() == [
        {"row_id": "s:5", "key": "k5", **rep5, **same},
        {"row_id": "s:2", "key": "k2", **rep5, **same},
        {"row_id": "s:8", "key": "k8", **rep5, **same},
        {"row_id": "s:1", "key": "k1", **rep1, **same},
        {"row_id": "s:7", "key": "k7", **rep1, **same},
    ]


def test_exact_groups_tell_same_key_rows_of_two_shards_apart() -> None:
    # img2dataset numbers each folder from 000000000: a:0 and b:1 share bytes, a:1 and b:1 a key
    shard = pa.table(
        {
            "row_id": ["a:0", "a:1", "b:0", "b:1"],
            "key": ["000000000", "000000001", "000000000", "000000001"],
            "sha256": ["h1", "h2", "h3", "h1"],
        }
    )
    table = exact_duplicate_groups(shard["row_id"], shard["key"], shard["sha256"])
    assert [(r["row_id"], r["key"], r["representative_row_id"]) for r in table.to_pylist()] == [
        ("a:0", "000000000", "a:0"),
        ("b:1", "000000001", "a:0"),
    ]


def test_exact_hashes_without_repeats_give_no_rows() -> None:
    assert exact_duplicate_groups(["s:0", "s:1"], ["a", "b"], ["x", "y"]).num_rows == 0
    assert exact_duplicate_groups([], [], []).num_rows == 0


def test_exact_groups_take_table_columns_of_several_chunks() -> None:
    shard = pa.concat_tables(
        [
            pa.table({"row_id": ["s:0", "s:1"], "key": ["a", "b"], "sha256": ["h", "g"]}),
            pa.table({"row_id": ["s:2"], "key": ["c"], "sha256": ["h"]}),
        ]
    )
    table = exact_duplicate_groups(shard["row_id"], shard["key"], shard["sha256"])
    assert table["row_id"].to_pylist() == ["s:0", "s:2"] and table["key"].to_pylist() == ["a", "c"]
    assert set(table["representative_row_id"].to_pylist()) == {"s:0"}
