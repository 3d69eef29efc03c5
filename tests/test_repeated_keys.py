"""Keys repeated across a corpus, counted a hash range at a time, against a plain count."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import audit.repeated_keys as rk
from audit.runfolder import RunFolder


@pytest.mark.parametrize("per_range", [1 << 24, 7])  # one range, and many small ones
def test_repeated_keys_match_a_plain_count(tmp_path: Path, monkeypatch, per_range: int) -> None:
    monkeypatch.setattr(rk, "HASHES_PER_RANGE", per_range)
    rng = np.random.default_rng(3)
    run = RunFolder(str(tmp_path))
    pool = rng.integers(0, 2**64, 60, dtype=np.uint64)  # few distinct keys: many repeats
    pool[:3] = [0, 2**64 - 1, 2**63]  # the ends of the hash space and a range boundary
    shards: dict[str, list[int]] = {}
    for i in range(5):
        keys = rng.choice(pool, 40)  # rows' keys, repeats within the shard too
        shards[f"s{i}"] = [int(k) for k in keys]
        distinct = np.unique(keys)  # what a shard task writes: its distinct hashes, sorted
        path = Path(run.part("keys", f"s{i}"))
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"key_hash": pa.array(distinct, pa.uint64())}), path)
    rows_in = sum(len(v) for v in shards.values())
    in_shards = Counter(k for keys in shards.values() for k in set(keys))
    want = (rows_in - len(in_shards), sum(1 for n in in_shards.values() if n > 1))
    assert rk.repeated_keys(run, sorted(shards), rows_in) == want
    assert want[1] > 0
