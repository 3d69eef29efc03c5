"""Write and read block-int8 embedding files (format: ``audit.schemas.embedding_storage``).

The stored codes and scales are exactly the in-memory ones, so reading back gives the quantizer's
own error and nothing more (see ``audit.kernels.quantize`` for the measured numbers).
"""

from __future__ import annotations

from collections.abc import Sequence

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audit.errors import ColumnTypeError, InputFileError
from audit.kernels.int8_cpu import dequantized_norms_cpu
from audit.kernels.quantize import QuantizedEmbeddings, is_torch
from audit.schemas.embedding_storage import embedding_storage_schema, parse_embedding_storage_schema


def to_table(q: QuantizedEmbeddings, keys: Sequence[str] | pa.Array | None = None) -> pa.Table:
    """The Arrow table of ``q`` (zero-copy over the codes and scales)."""
    codes, scales = (np.ascontiguousarray(a.cpu().numpy() if is_torch(a) else a) for a in (q.codes, q.scales))
    n, d = codes.shape
    schema = embedding_storage_schema(d, q.block_size, keyed=keys is not None)
    columns = [
        pa.FixedSizeBinaryArray.from_buffers(pa.binary(d), n, [None, pa.py_buffer(codes)]),
        pa.FixedSizeListArray.from_arrays(pa.array(scales.reshape(-1), pa.float32()), scales.shape[1]),
    ]
    if keys is not None:
        if len(keys) != n:
            raise ValueError(f"{len(keys)} keys for {n} embedding rows")
        key_array = keys if isinstance(keys, pa.Array) else pa.array(keys, pa.string())
        columns.insert(0, key_array.cast(pa.string()))
    return pa.Table.from_arrays(columns, schema=schema)


def from_table(table: pa.Table) -> tuple[QuantizedEmbeddings, list[str] | None]:
    """Embeddings (and keys, when stored) from a table in the stored schema; ValueError otherwise."""
    dim, block_size, keyed = parse_embedding_storage_schema(table.schema)
    n = table.num_rows
    codes_arr = table.column("codes").combine_chunks()
    scales_arr = table.column("scales").combine_chunks()
    if codes_arr.null_count or scales_arr.null_count:
        raise ValueError("embedding file has null codes or scales")
    # Zero-copy view of the fixed-size binary values buffer, honouring the array's offset.
    codes = np.frombuffer(codes_arr.buffers()[1], np.int8, count=n * dim, offset=codes_arr.offset * dim)
    scales = scales_arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    codes = codes.reshape(n, dim)
    scales = scales.reshape(n, dim // block_size)
    q = QuantizedEmbeddings(codes, scales, dequantized_norms_cpu(codes, scales, block_size), block_size)
    return q, (table.column("key").to_pylist() if keyed else None)


def write_embeddings(url: str, q: QuantizedEmbeddings, *, keys: Sequence[str] | None = None) -> int:
    """Write ``q`` as one zstd parquet file at an fsspec URL; returns the bytes written.

    Not atomic by itself: the pipeline's temp-and-rename writers wrap it for run folders.
    """
    table = to_table(q, keys)
    with fsspec.open(url, "wb") as f:
        # Dictionary encoding and statistics buy nothing on near-random fixed-size codes.
        pq.write_table(table, f, compression="zstd", use_dictionary=False, write_statistics=False)
    fs, path = fsspec.core.url_to_fs(url)
    return int(fs.size(path))


def read_embeddings(url: str) -> tuple[QuantizedEmbeddings, list[str] | None]:
    """Read a file written by ``write_embeddings``: (embeddings, keys or None)."""
    try:
        with fsspec.open(url, "rb") as f:
            table = pq.read_table(f)
    except FileNotFoundError:
        raise InputFileError(f"{url}: embedding file not found") from None
    except (OSError, pa.ArrowInvalid) as err:
        raise InputFileError(f"{url}: not a readable parquet file ({err})") from None
    try:
        return from_table(table)
    except ValueError as err:
        raise ColumnTypeError(f"{url}: {err}") from None
