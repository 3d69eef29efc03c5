"""Corpus-wide duplicate groups (exact, image, caption) on the driver, without holding the corpus'
pairs or keys in memory.

Each shard's near-duplicate pairs and image hashes are spilled to hash-partitioned buckets on local disk
and grouped bucket by bucket (``audit.neighbours.components``); keys are attached shard by shard while
``duplicates.parquet`` is written as a stream. The driver holds about 16 bytes per corpus row (union-find
arrays over dense row positions), one bucket, one shard's keys and the representatives' keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audit.embedding_store import embedding_path
from audit.neighbours import SimilarPairs, split_row_ids
from audit.neighbours.components import Groups, edge_groups, hash_groups
from audit.neighbours.duplicates import HASH_RECORD, groups_table, hash_records
from audit.neighbours.schemas import DUPLICATES_SCHEMA
from audit.neighbours.spill import SpillBuckets, bucket_count, mix64
from audit.runfolder import RunFolder
from audit.schemas import ShardRecord

PAIR_RECORD = np.dtype([("a", "<i8"), ("b", "<i8"), ("similarity", "<f4")])
SIDES = {"image": "image", "text": "caption"}  # embedding side -> duplicate kind

KeyReader = Callable[[int], pa.Array]  # shard index -> that shard's keys, in row order


@dataclass(frozen=True)
class DenseRows:
    """Positions 0..n-1 over the corpus for row ids ``shard_index << 32 | row``: shard i starts at
    offsets[i]."""

    offsets: np.ndarray

    @classmethod
    def of(cls, counts: list[int]) -> DenseRows:
        return cls(np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64))

    @property
    def n(self) -> int:
        return int(self.offsets[-1])

    def positions(self, ids: np.ndarray) -> np.ndarray:
        shard, row = split_row_ids(ids)
        return self.offsets[shard] + row


def write_pairs(run: RunFolder, shard_id: str, side: str, pairs: SimilarPairs) -> None:
    table = pa.table({"a": pairs.a, "b": pairs.b, "similarity": pairs.similarity})
    run.write_parquet(run.part("pairs", f"{shard_id}.{side}"), table)


def _pairs_path(run: RunFolder, shard_id: str, side: str) -> str:
    return run.part("pairs", f"{shard_id}.{side}")


def write_duplicates(run: RunFolder, done: list[ShardRecord]) -> dict[str, int]:
    """Write RUN/duplicates.parquet (exact, then image, then caption groups; within a kind, rows in
    corpus order; an exact group's representative is its first row) and return the rows of each kind."""
    counts: dict[str, int] = {}

    def tables() -> Iterator[pa.Table]:
        kinds = [("exact", lambda: _exact_groups(run, done))]
        kinds += [(kind, lambda side=side: _near_groups(run, done, side)) for side, kind in SIDES.items()]
        for kind, build in kinds:
            groups, rows, read_keys = build()  # one kind's groups in memory at a time
            counts[kind] = len(groups)
            yield from _group_tables(groups, rows, read_keys, kind)

    run.write_parquet_stream(run.path("duplicates.parquet"), DUPLICATES_SCHEMA, tables())
    return counts


def _exact_groups(run: RunFolder, done: list[ShardRecord]) -> tuple[Groups, DenseRows, KeyReader]:
    paths = [run.scores(r.shard_id) for r in done]
    rows = DenseRows.of([run.parquet_rows(p) for p in paths])
    with SpillBuckets(HASH_RECORD, bucket_count(rows.n)) as spill:
        for i, path in enumerate(paths):
            hashes = run.read_parquet(path, columns=["sha256"]).column("sha256")
            records = hash_records(hashes, rows.offsets[i] + np.arange(len(hashes)))
            spill.add(records, records["hi"])
        groups = hash_groups(spill)
    return groups, rows, lambda i: run.read_parquet(paths[i], columns=["key"]).column("key")


def _near_groups(run: RunFolder, done: list[ShardRecord], side: str) -> tuple[Groups, DenseRows, KeyReader]:
    paths = [embedding_path(run, r.shard_id, side) for r in done]
    rows = DenseRows.of([run.parquet_rows(p) if run.exists(p) else 0 for p in paths])
    pair_paths = [_pairs_path(run, r.shard_id, side) for r in done]
    with SpillBuckets(PAIR_RECORD, bucket_count(sum(run.parquet_rows(p) for p in pair_paths))) as spill:
        for path in pair_paths:
            t = run.read_parquet(path)
            records = np.empty(t.num_rows, PAIR_RECORD)
            records["a"] = rows.positions(t.column("a").to_numpy())
            records["b"] = rows.positions(t.column("b").to_numpy())
            records["similarity"] = t.column("similarity").to_numpy()
            spill.add(records, mix64(records["a"], records["b"]))

        def passes() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            for bucket in spill:  # a pair found from both ends or by two shards: once, at its best
                pairs = SimilarPairs.of(bucket["a"], bucket["b"], bucket["similarity"])
                yield pairs.a, pairs.b, pairs.similarity

        groups = edge_groups(passes, rows.n)
    return groups, rows, lambda i: run.read_parquet(paths[i], columns=["key"]).column("key")


def _group_tables(groups: Groups, rows: DenseRows, read_keys: KeyReader, kind: str) -> Iterator[pa.Table]:
    """DUPLICATES_SCHEMA tables shard by shard; representatives' keys are read first, once each."""
    if not len(groups):
        return
    reps = np.unique(groups.representative)
    rep_bounds = np.searchsorted(reps, rows.offsets)
    rep_parts = [
        read_keys(i).take(pa.array(reps[lo:hi] - rows.offsets[i]))
        for i, (lo, hi) in enumerate(itertools.pairwise(rep_bounds))
        if hi > lo
    ]
    rep_keys = pa.chunked_array(rep_parts, pa.string()).combine_chunks()
    bounds = np.searchsorted(groups.node, rows.offsets)
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        if hi == lo:
            continue
        part = groups.rows(lo, hi)
        keys = read_keys(i).take(pa.array(part.node - rows.offsets[i]))
        rep_of_row = pa.array(np.searchsorted(reps, part.representative))
        yield groups_table(part, keys, rep_keys.take(rep_of_row), kind, grouped=False)
