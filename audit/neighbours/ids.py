"""Index ids for faiss (int64) and the lookup back to the corpus' rows (``row_id`` and ``key``).

An index id is ``shard_index << 32 | position``, the position of the row in its shard's embedding
file: each shard task computes its own ids without coordination, and the shard and position can be
read back from the id (2^31 shards of up to 2^32 rows). Index ids live only inside the FAISS stage;
every output names a row by its corpus-unique ``row_id`` (``audit.row_identity``) with the dataset's
``key`` beside it as a label (keys may repeat across shards, so none is looked up by key).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from audit.neighbours.schemas import to_arrow

POSITION_BITS = 32

# What a lookup returns: one row per index id, in the order asked.
ROW_LABELS_SCHEMA = pa.schema(
    [pa.field("row_id", pa.string(), nullable=False), pa.field("key", pa.string(), nullable=False)]
)

# index ids -> ROW_LABELS_SCHEMA table, in the same order. RowTable is one; the pipeline reads the
# shards' embedding files (row ids) and scores (keys) instead.
RowLookup = Callable[[np.ndarray], pa.Table]


def index_ids(shard_index: int, n_rows: int, start: int = 0) -> np.ndarray:
    if not 0 <= shard_index < 2**31 or not 0 <= start <= start + n_rows <= 2**POSITION_BITS:
        raise ValueError(f"shard {shard_index} rows {start}..{start + n_rows} do not fit an index id")
    return (np.int64(shard_index) << POSITION_BITS) | np.arange(start, start + n_rows, dtype=np.int64)


def split_index_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shard_index, position) of each id."""
    ids = np.asarray(ids, dtype=np.int64)
    return ids >> POSITION_BITS, ids & ((1 << POSITION_BITS) - 1)


def row_labels(
    row_ids: Sequence[str] | pa.Array | pa.ChunkedArray, keys: Sequence[str] | pa.Array | pa.ChunkedArray
) -> pa.Table:
    """A ROW_LABELS_SCHEMA table; ValueError when the lengths differ or a value is null."""
    row_ids, keys = to_arrow(row_ids, pa.string()), to_arrow(keys, pa.string())
    if len(row_ids) != len(keys):
        raise ValueError(f"{len(row_ids)} row ids but {len(keys)} keys")
    if row_ids.null_count or keys.null_count:
        raise ValueError("row ids and keys must not be null")
    return pa.Table.from_arrays([row_ids, keys], schema=ROW_LABELS_SCHEMA)


class RowTable:
    """An in-memory index id -> (row_id, key) map, for the rows a table needs."""

    def __init__(
        self,
        ids: np.ndarray,
        row_ids: Sequence[str] | pa.Array | pa.ChunkedArray,
        keys: Sequence[str] | pa.Array | pa.ChunkedArray,
    ) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        labels = row_labels(row_ids, keys)
        if len(ids) != labels.num_rows:
            raise ValueError(f"{len(ids)} ids but {labels.num_rows} row ids")
        order = np.argsort(ids, kind="stable")
        self._ids = ids[order]
        self._labels = labels.take(pa.array(order))
        if len(ids) > 1 and (np.diff(self._ids) == 0).any():
            raise ValueError("RowTable ids must be unique")

    def __call__(self, ids: np.ndarray) -> pa.Table:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return ROW_LABELS_SCHEMA.empty_table()
        pos = np.minimum(np.searchsorted(self._ids, ids), len(self._ids) - 1)
        missing = ids if not len(self._ids) else ids[self._ids[pos] != ids]
        if missing.size:
            raise KeyError(f"{missing.size} index ids have no row, e.g. {int(missing[0])}")
        return self._labels.take(pa.array(pos))
