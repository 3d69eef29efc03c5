"""Hash-partitioned record buckets on local disk, so a corpus-wide grouping holds one bucket at a time.

Records (a NumPy structured dtype) are appended to one of ``n_buckets`` files by a hash the caller
chooses; every record with the same hash lands in the same bucket, so duplicates of a pair, or all rows
of one image hash, can be resolved bucket by bucket. Memory: the caller's batch plus one bucket.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

# Records per bucket aimed for; with ~20-byte records a bucket is ~1.3 MiB (a few times that while grouped).
BUCKET_RECORDS = 1 << 16
MAX_BUCKETS = 256  # files open at once (well under the usual 1024-descriptor limit)


def bucket_count(expected_records: int, bucket_records: int | None = None) -> int:
    per_bucket = bucket_records or BUCKET_RECORDS
    return int(min(MAX_BUCKETS, max(1, math.ceil(expected_records / per_bucket))))


def mix64(*columns: np.ndarray) -> np.ndarray:
    """A 64-bit mix of integer columns (splitmix64 finaliser): spreads sequential ids over buckets."""
    h = np.zeros(len(columns[0]), np.uint64)
    with np.errstate(over="ignore"):
        for col in columns:
            h ^= np.asarray(col).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) + (h << np.uint64(6))
            h ^= h >> np.uint64(30)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(27)
            h *= np.uint64(0x94D049BB133111EB)
            h ^= h >> np.uint64(31)
    return h


class SpillBuckets:
    """Append records to buckets, then read the buckets back one at a time. A context manager: the
    temporary folder (under ``scratch``, default the system's) is removed on exit."""

    def __init__(self, dtype: np.dtype, n_buckets: int, scratch: str | None = None) -> None:
        self.dtype = np.dtype(dtype)
        self.n_buckets = n_buckets
        self._dir = Path(tempfile.mkdtemp(prefix="mmaudit-spill-", dir=scratch))
        self._files = [open(self._dir / f"{i:04d}.bin", "ab") for i in range(n_buckets)]  # noqa: SIM115
        self.records = 0

    def add(self, records: np.ndarray, hashes: np.ndarray) -> None:
        records = np.asarray(records, self.dtype)
        bucket = (np.asarray(hashes, np.uint64) % np.uint64(self.n_buckets)).astype(np.int64)
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(self.n_buckets + 1))
        for i in np.flatnonzero(np.diff(bounds)):
            records[order[bounds[i] : bounds[i + 1]]].tofile(self._files[i])
        self.records += len(records)

    def __iter__(self) -> Iterator[np.ndarray]:
        for f in self._files:
            f.flush()
        for i in range(self.n_buckets):
            yield np.fromfile(self._dir / f"{i:04d}.bin", dtype=self.dtype)

    def close(self) -> None:
        for f in self._files:
            f.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> SpillBuckets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
