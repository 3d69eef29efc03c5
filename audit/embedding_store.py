"""Per-shard CLIP embeddings in the run folder, block-int8 (about 0.27x the bytes of float32).

``embeddings/<shard>.image.parquet`` and ``embeddings/<shard>.text.parquet`` hold the rows that
have an embedding, keyed; the format is ``audit.schemas.embedding_storage``. The corpus-wide
stages (FAISS index, duplicates, clusters, expansion) read them back.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audit.kernels.dispatch import get_kernel
from audit.kernels.quantize import DEFAULT_BLOCK_SIZE
from audit.kernels.quantize_memo import quantize_once
from audit.kernels.storage import from_table, to_table
from audit.runfolder import RunFolder
from audit.schemas.embedding_storage import parse_embedding_storage_schema
from audit.tables import embedding_matrix

SIDES = {"image": "image_embedding", "text": "text_embedding"}


def block_size_for(dim: int) -> int:
    """The default block size, or the largest power of two >= 16 that tiles a smaller dimension."""
    block = DEFAULT_BLOCK_SIZE
    while block > 16 and dim % block:
        block //= 2
    return block


def embedding_path(run: RunFolder, shard_id: str, side: str) -> str:
    return run.path("embeddings", f"{shard_id}.{side}.parquet")


def embedding_tables(scored: pa.Table) -> dict[str, pa.Table]:
    """Block-int8 tables of the rows that have each side's embedding, keyed by row_id (the storage
    format's ``key`` column holds the corpus-unique row id, never the dataset's repeatable key)."""
    quantize = get_kernel("quantize_int8", "cpu")
    out = {}
    for side, column in SIDES.items():
        if column not in scored.column_names:
            continue
        idx, matrix = embedding_matrix(scored.column(column))
        if idx.size:
            q = quantize_once(matrix, block_size_for(matrix.shape[1]), quantize)
            out[side] = to_table(q, scored.column("row_id").take(pa.array(idx)).combine_chunks())
    return out


def write_shard_embeddings(run: RunFolder, shard_id: str, scored: pa.Table) -> dict[str, int]:
    """Quantize and write both sides of one shard's scored rows at once; returns rows per side."""
    tables = embedding_tables(scored)
    for side, table in tables.items():
        run.write_parquet(embedding_path(run, shard_id, side), table)
    return {side: tables[side].num_rows if side in tables else 0 for side in SIDES}


def read_shard_embeddings(run: RunFolder, shard_id: str, side: str) -> tuple[list[str], np.ndarray] | None:
    """(keys, dequantized float32 rows) of one shard's side, or None when it has none."""
    path = embedding_path(run, shard_id, side)
    if not run.exists(path):
        return None
    q, keys = from_table(run.read_parquet(path))
    return list(keys or []), np.asarray(get_kernel("dequantize_int8", "cpu")(q), np.float32)


def embedding_dim(run: RunFolder, shard_id: str, side: str) -> int:
    """The embedding dimension of one shard's side, from the file's schema alone."""
    with run.fs.open(embedding_path(run, shard_id, side), "rb") as f:
        return parse_embedding_storage_schema(pq.read_schema(f))[0]
