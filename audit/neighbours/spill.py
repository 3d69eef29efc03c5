"""Hash-partitioned record buckets on local disk, so a corpus-wide grouping holds one bucket at a time.

Records (a NumPy structured dtype) are appended to one of ``n_buckets`` files by a hash the caller
chooses; every record with the same hash lands in the same bucket, so duplicates of a pair, or all rows
of one image hash, can be resolved bucket by bucket. Memory: the caller's batch plus one bucket, about
BUCKET_RECORDS records up to MAX_BUCKETS * BUCKET_RECORDS (~2.7e8) records in all; beyond that buckets
grow with the total. Files are opened per append, so no descriptor limit caps the bucket count.
The folder is under ``scratch``, else Dask's ``temporary-directory`` (where Dask spills), else the
system's temp folder: point it at a disk, not a tmpfs, for large corpora.
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
MAX_BUCKETS = 4096


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


def _dask_scratch() -> str | None:
    import dask.config

    folder = dask.config.get("temporary-directory", None)
    return folder if folder and Path(folder).is_dir() else None


class SpillBuckets:
    """Append records to buckets, then read the buckets back one at a time (as often as needed). A
    context manager: the temporary folder is removed on exit."""

    def __init__(self, dtype: np.dtype, n_buckets: int, scratch: str | None = None) -> None:
        self.dtype = np.dtype(dtype)
        self.n_buckets = n_buckets
        self._dir = Path(tempfile.mkdtemp(prefix="mmaudit-spill-", dir=scratch or _dask_scratch()))
        self.records = 0

    def _path(self, bucket: int) -> Path:
        return self._dir / f"{bucket:05d}.bin"

    def add(self, records: np.ndarray, hashes: np.ndarray) -> None:
        records = np.asarray(records, self.dtype)
        bucket = (np.asarray(hashes, np.uint64) % np.uint64(self.n_buckets)).astype(np.int64)
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(self.n_buckets + 1))
        for i in np.flatnonzero(np.diff(bounds)):
            with open(self._path(i), "ab") as f:
                records[order[bounds[i] : bounds[i + 1]]].tofile(f)
        self.records += len(records)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.n_buckets):
            path = self._path(i)
            yield np.fromfile(path, dtype=self.dtype) if path.exists() else np.empty(0, self.dtype)

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> SpillBuckets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
