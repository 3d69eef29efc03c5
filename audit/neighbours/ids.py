"""Row ids for faiss (int64) and the lookup back to the corpus' string keys.

A row id is ``shard_index << 32 | row_index``: each shard task computes its own ids without coordination,
and the shard and row can be read back from the id (2^31 shards of up to 2^32 rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from audit.neighbours.schemas import to_arrow

ROW_BITS = 32

# ids -> keys, in the same order. KeyTable is one; the pipeline may read key columns from shards instead.
KeyLookup = Callable[[np.ndarray], pa.Array]


def row_ids(shard_index: int, n_rows: int, start: int = 0) -> np.ndarray:
    if not 0 <= shard_index < 2**31 or not 0 <= start <= start + n_rows <= 2**ROW_BITS:
        raise ValueError(f"shard {shard_index} rows {start}..{start + n_rows} do not fit a row id")
    return (np.int64(shard_index) << ROW_BITS) | np.arange(start, start + n_rows, dtype=np.int64)


def split_row_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shard_index, row_index) of each id."""
    ids = np.asarray(ids, dtype=np.int64)
    return ids >> ROW_BITS, ids & ((1 << ROW_BITS) - 1)


class KeyTable:
    """An in-memory id -> key map, for the rows a table needs (duplicates, seeds and their neighbours)."""

    def __init__(self, ids: np.ndarray, keys: Sequence[str] | pa.Array | pa.ChunkedArray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        keys = to_arrow(keys, pa.string())
        if len(ids) != len(keys):
            raise ValueError(f"{len(ids)} ids but {len(keys)} keys")
        order = np.argsort(ids, kind="stable")
        self._ids = ids[order]
        self._keys = keys.take(pa.array(order))
        if len(ids) > 1 and (np.diff(self._ids) == 0).any():
            raise ValueError("KeyTable ids must be unique")

    def __call__(self, ids: np.ndarray) -> pa.Array:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return pa.array([], type=pa.string())
        pos = np.minimum(np.searchsorted(self._ids, ids), len(self._ids) - 1)
        missing = ids if not len(self._ids) else ids[self._ids[pos] != ids]
        if missing.size:
            raise KeyError(f"{missing.size} row ids have no key, e.g. {int(missing[0])}")
        return self._keys.take(pa.array(pos))
