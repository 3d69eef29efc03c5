"""Count the dataset keys that repeat across shards, without holding the corpus' keys in memory.

Each shard task writes its distinct key hashes, sorted (``parts/keys/<shard>.parquet``). Here the
hash space is cut into ranges and each range is counted over all shards at once, so memory
follows one range (about ``rows / ranges`` hashes), not the corpus.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from audit.runfolder import RunFolder

HASHES_PER_RANGE = 1 << 24  # ~128 MiB of uint64 per range at most on average


def repeated_keys(run: RunFolder, shard_ids: list[str], rows_in: int) -> tuple[int, int]:
    """(rows whose key appeared on an earlier row of the corpus, keys found in several shards).

    Rows with a repeated key = rows - distinct keys corpus-wide; keys in several shards are the
    hashes that occur in more than one shard's distinct set.
    """
    paths = [run.part("keys", s) for s in shard_ids if run.exists(run.part("keys", s))]
    if not paths:
        return 0, 0
    dataset = ds.dataset(paths, format="parquet", filesystem=run.fs)
    total = dataset.count_rows()
    ranges = max(1, -(-total // HASHES_PER_RANGE))
    bounds = [(2**64 * i) // ranges for i in range(ranges + 1)]
    distinct = several = 0
    for lo, hi in itertools.pairwise(bounds):
        field = ds.field("key_hash")
        filt = field >= pa.scalar(lo, pa.uint64())
        if hi < 2**64:
            filt = filt & (field < pa.scalar(hi, pa.uint64()))
        col = dataset.to_table(columns=["key_hash"], filter=filt).column("key_hash")
        values = np.sort(pc.cast(col, "uint64").to_numpy()) if len(col) else np.zeros(0, np.uint64)
        if not values.size:
            continue
        # runs of equal hashes in the sorted range (np.unique would sort it a second time)
        starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
        counts = np.diff(np.append(starts, values.size))
        distinct += counts.size
        several += int((counts > 1).sum())
    return rows_in - distinct, several
