"""Parquet shards (LAION metadata, img2dataset) and the metadata parquet of the embedding formats,
read page by page."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from audit.readers.base import ShardReader
from audit.readers.files import HashingFile, open_input, parquet_error
from audit.shards import ShardFormat, check_columns

# Parquet column chunks are read through a buffer of this size, page by page, instead of whole.
# (A single page is still read whole: pyarrow writes a page per 1024 values by default.)
PARQUET_BUFFER_BYTES = 1 << 20


def parquet_batches(r: ShardReader, fmt: ShardFormat) -> Iterator[tuple[pa.Table, dict[str, str]]]:
    """Raw row batches of ``r.spec.path`` with its column map; sets ``r.sha256`` at the end."""
    url = r.spec.path
    with open_input(url) as raw:
        f = HashingFile(raw)
        try:
            pf = pq.ParquetFile(f, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as e:
            raise parquet_error(url, e) from None
        cols = check_columns(url, pf.schema_arrow, fmt)
        it = pf.iter_batches(batch_size=r.batch_rows, use_threads=False)
        while True:
            try:
                batch = next(it, None)
            except (pa.ArrowInvalid, OSError) as e:  # the footer was fine: a data page is not
                raise parquet_error(url, e, at_row=r.rows) from None
            if batch is None:
                break
            yield pa.Table.from_batches([batch]), cols
            del batch
        r.sha256 = f.hexdigest()


def parquet_shard(r: ShardReader) -> Iterator[pa.Table]:
    for table, cols in parquet_batches(r, r.spec.format):
        yield r._normalize(table, cols, carries_images="image" in cols)
        del table
