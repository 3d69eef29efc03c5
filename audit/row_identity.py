"""Corpus-unique row ids: ``<shard_id>:<row_index>``.

A dataset's own ``key`` may repeat (img2dataset renumbers keys per output folder, scrapes repeat
ids), so nothing that picks a row (flags, decisions, removal lists, image lookups, neighbours)
uses it. A shard id is unique within a run and stable across reruns of the same shard set, and a
row index is the row's position in its shard, so the pair names one row and never changes while
the input does not. Shard ids may themselves contain ':', so a row id is split at its last ':'.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

import pyarrow as pa
import pyarrow.compute as pc


def row_id(shard_id: str, row_index: int) -> str:
    return f"{shard_id}:{row_index}"


def row_ids_for(shard_id: str, start: int, n: int) -> pa.Array:
    """Row ids of rows ``start .. start + n`` of one shard, built in Arrow (no per-row Python)."""
    idx = pa.array(range(start, start + n), pa.int64()).cast(pa.string())
    return pc.binary_join_element_wise(pa.scalar(shard_id), idx, ":").cast(pa.string())


def split_row_id(value: str) -> tuple[str, int]:
    """(shard_id, row_index) of a row id; ValueError naming the value when it is not one."""
    shard_id, sep, index = value.rpartition(":")
    if not sep or not shard_id or not index.isdigit():
        raise ValueError(f"{value!r} is not a row id (expected <shard_id>:<row_index>)")
    return shard_id, int(index)


def row_ids_by_shard(row_ids: Iterable[str], shards: Container[str]) -> dict[str, list[str]]:
    """``row_ids`` grouped by their shard id, keeping only shards in ``shards`` (the run's own: a row
    id from a caller never names a file by itself) and dropping values that are no row id."""
    out: dict[str, list[str]] = {}
    for value in row_ids:
        try:
            shard_id, _ = split_row_id(value)
        except ValueError:
            continue
        if shard_id in shards:
            out.setdefault(shard_id, []).append(value)
    return out
