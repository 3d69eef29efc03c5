"""Corpus-wide duplicate groups (exact, image, caption) on the driver, without holding the corpus'
pairs or row ids in memory.

Each shard's near-duplicate pairs and image hashes are spilled to hash-partitioned buckets on local disk
and grouped bucket by bucket (``audit.neighbours.components``); row ids (and keys, as labels) are
attached shard by shard while ``duplicates.parquet`` is written as a stream. The driver holds about 16
bytes per corpus row (union-find arrays over dense row positions), one bucket, one shard's row labels
and the representatives' row labels. Rows are told apart by row id only: keys may repeat across shards.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.embedding_store import embedding_path
from audit.errors import InputFileError
from audit.neighbours import ROW_LABELS_SCHEMA, SimilarPairs, row_labels, split_index_ids
from audit.neighbours.components import Groups, edge_groups, hash_groups
from audit.neighbours.duplicates import HASH_RECORD, groups_table, hash_records
from audit.neighbours.schemas import DUPLICATES_SCHEMA
from audit.neighbours.spill import SpillBuckets, bucket_count, mix64
from audit.runfolder import RunFolder
from audit.schemas import ShardRecord

PAIR_RECORD = np.dtype([("a", "<i8"), ("b", "<i8"), ("similarity", "<f4")])
SIDES = {"image": "image", "text": "caption"}  # embedding side -> duplicate kind

# shard index -> that shard's row labels (ROW_LABELS_SCHEMA: row_id, key), in the order of its file
RowReader = Callable[[int], pa.Table]


@dataclass(frozen=True)
class DenseRows:
    """Positions 0..n-1 over the corpus for index ids ``shard_index << 32 | position``: shard i starts
    at offsets[i]."""

    offsets: np.ndarray

    @classmethod
    def of(cls, counts: list[int]) -> DenseRows:
        return cls(np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64))

    @property
    def n(self) -> int:
        return int(self.offsets[-1])

    def positions(self, ids: np.ndarray) -> np.ndarray:
        shard, position = split_index_ids(ids)
        return self.offsets[shard] + position


def scores_positions(run: RunFolder, shard_id: str, row_ids: pa.Array, scores: pa.Table) -> pa.Array:
    """Where each row id sits in the shard's scores table (its ``row_id`` column); InputFileError
    naming the file when one is not there (a run folder mixing outputs of two audits)."""
    at = pc.index_in(row_ids, value_set=scores.column("row_id").combine_chunks())
    if at.null_count:
        missing = row_ids.filter(pc.is_null(at))[0].as_py()
        raise InputFileError(
            f"{run.scores(shard_id)}: no row {missing!r}, which the shard's embeddings name: "
            "audit the run again into a new folder"
        )
    return at


def label_rows(run: RunFolder, shard_id: str, row_ids: pa.Array | list[str]) -> pa.Table:
    """Row labels (row_id, key) of some rows of one shard: the dataset key comes from its scores."""
    row_ids = pa.array(row_ids, pa.string()) if isinstance(row_ids, list) else row_ids
    scores = run.read_parquet(run.scores(shard_id), columns=["row_id", "key"])
    return row_labels(row_ids, scores.column("key").take(scores_positions(run, shard_id, row_ids, scores)))


def embedding_rows(run: RunFolder, shard_id: str, side: str) -> pa.Table:
    """Row labels of one shard's embedding rows, in file order (the file's ``key`` column holds the
    row id); an empty table when the shard has no embedding on that side."""
    path = embedding_path(run, shard_id, side)
    if not run.exists(path):
        return ROW_LABELS_SCHEMA.empty_table()
    row_ids = run.read_parquet(path, columns=["key"]).column("key").combine_chunks()
    return label_rows(run, shard_id, row_ids)


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
            groups, rows, read_rows = build()  # one kind's groups in memory at a time
            counts[kind] = len(groups)
            yield from _group_tables(groups, rows, read_rows, kind)

    run.write_parquet_stream(run.path("duplicates.parquet"), DUPLICATES_SCHEMA, tables())
    return counts


def _exact_groups(run: RunFolder, done: list[ShardRecord]) -> tuple[Groups, DenseRows, RowReader]:
    paths = [run.scores(r.shard_id) for r in done]
    rows = DenseRows.of([run.parquet_rows(p) for p in paths])
    with SpillBuckets(HASH_RECORD, bucket_count(rows.n)) as spill:
        for i, path in enumerate(paths):
            hashes = run.read_parquet(path, columns=["sha256"]).column("sha256")
            records = hash_records(hashes, rows.offsets[i] + np.arange(len(hashes)))
            spill.add(records, records["hi"])
        groups = hash_groups(spill)
    return groups, rows, lambda i: run.read_parquet(paths[i], columns=["row_id", "key"])


def _near_groups(run: RunFolder, done: list[ShardRecord], side: str) -> tuple[Groups, DenseRows, RowReader]:
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
    return groups, rows, lambda i: embedding_rows(run, done[i].shard_id, side)


def _group_tables(groups: Groups, rows: DenseRows, read_rows: RowReader, kind: str) -> Iterator[pa.Table]:
    """DUPLICATES_SCHEMA tables shard by shard; representatives' row labels are read first, once each."""
    if not len(groups):
        return
    reps = np.unique(groups.representative)
    rep_bounds = np.searchsorted(reps, rows.offsets)
    rep_parts = [
        read_rows(i).select(ROW_LABELS_SCHEMA.names).take(pa.array(reps[lo:hi] - rows.offsets[i]))
        for i, (lo, hi) in enumerate(itertools.pairwise(rep_bounds))
        if hi > lo
    ]
    rep_rows = pa.concat_tables(rep_parts).combine_chunks()
    bounds = np.searchsorted(groups.node, rows.offsets)
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        if hi == lo:
            continue
        part = groups.rows(lo, hi)
        members = read_rows(i).select(ROW_LABELS_SCHEMA.names).take(pa.array(part.node - rows.offsets[i]))
        rep_of_row = pa.array(np.searchsorted(reps, part.representative))
        yield groups_table(part, members, rep_rows.take(rep_of_row), kind, grouped=False)
