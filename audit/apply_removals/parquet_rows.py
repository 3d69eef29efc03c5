"""Drop rows of a Parquet shard by row index while streaming it batch by batch (LAION metadata,
img2dataset output, and the metadata of clip-retrieval and DataComp shards). The schema (with its
metadata) and the compression codec are kept; each written row group holds one batch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audit.apply_removals.outputs import Opener, Staging
from audit.apply_removals.plan import ShardJob
from audit.errors import InputFileError
from audit.readers import HashingFile
from audit.shards import check_columns

BATCH_ROWS = 1024


@dataclass(frozen=True)
class Filtered:
    rows_in: int
    rows_out: int
    sha256: str  # of the source file, for checking it is the file the run audited


class RowMismatchError(InputFileError):
    """A row to remove does not hold the key the removal list names: the shard is not the one audited."""


def row_keys(table: pa.Table, cols: Mapping[str, str], shard_id: str, start: int) -> list[str]:
    """The keys the readers give these rows (audit.readers.normalize): the dataset's SAMPLE_ID / uid
    first, then its key column, else ``<shard_id>:<row>``."""
    name = cols.get("sample_id") or cols.get("key")
    values = table.column(name).cast(pa.string()).to_pylist() if name else [None] * table.num_rows
    return [k if k not in (None, "") else f"{shard_id}:{start + i}" for i, k in enumerate(values)]


def check_keys(source: str, expected: Mapping[int, str], got: Mapping[int, str]) -> None:
    for index, key in expected.items():
        if got.get(index) != key:
            found = "no such row" if index not in got else f"key {got[index]!r}"
            raise RowMismatchError(
                f"{source}: row {index} should be key {key!r} (removal list) but the shard has {found}: "
                "it changed since the audit; audit it again"
            )


def codec(pf: pq.ParquetFile) -> str:
    md = pf.metadata
    if md.num_row_groups and md.num_columns:
        name = md.row_group(0).column(0).compression.lower()
        return "none" if name == "uncompressed" else name
    return "snappy"


def filter_parquet(
    src: BinaryIO,
    dst: BinaryIO,
    drop: np.ndarray,
    expected_keys: Mapping[int, str],
    *,
    shard_id: str,
    source: str,
    fmt: str,
) -> Filtered:
    """Copy ``src`` without the rows at the sorted indices ``drop``; the rows dropped must hold
    ``expected_keys``. Memory holds one batch."""
    hashed = HashingFile(src)
    try:
        pf = pq.ParquetFile(hashed, buffer_size=1 << 20, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputFileError(f"{source}: not a readable parquet file ({str(e).splitlines()[0]})") from None
    cols = check_columns(source, pf.schema_arrow, fmt)  # type: ignore[arg-type]
    start, kept = 0, 0
    got: dict[int, str] = {}
    with pq.ParquetWriter(dst, pf.schema_arrow, compression=codec(pf)) as writer:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
            table = pa.Table.from_batches([batch], schema=pf.schema_arrow)
            n = table.num_rows
            here = drop[(drop >= start) & (drop < start + n)] - start
            if len(here):
                keys = row_keys(table, cols, shard_id, start)
                got.update({int(start + i): keys[i] for i in here})
                mask = np.ones(n, dtype=bool)
                mask[here] = False
                table = table.filter(pa.array(mask))
            if table.num_rows:
                writer.write_table(table)
            kept += table.num_rows
            start += n
            del table, batch
    check_keys(source, expected_keys, got)
    return Filtered(start, kept, hashed.hexdigest())


def clean_parquet_shard(job: ShardJob, staging: Staging, open_src: Opener) -> Filtered:
    """LAION metadata or img2dataset parquet: one file."""
    target = staging.file(job.targets["main"])
    with open_src(job.sources["main"]) as src, target.open() as dst:
        return filter_parquet(src, dst, job.drop, job.keys, shard_id=job.record.shard_id,
                              source=job.sources["main"], fmt=job.record.format)  # fmt: skip
