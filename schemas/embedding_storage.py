"""Arrow schema of block-int8 embedding files, version 1 (written by ``audit.kernels.storage``).

One parquet file holds one (N, D) embedding matrix, row-aligned with its shard (or keyed):

- ``key``     string, optional: the row's stable key when the file is not row-aligned;
- ``codes``   fixed_size_binary(D): the row's D int8 codes, two's complement, in feature order;
- ``scales``  fixed_size_list<float32>[D / block_size]: one absmax scale per block;
  the row is ``codes[b * block_size:(b + 1) * block_size] * scales[b]`` for each block b.

Schema metadata names the quantizer and its parameters; readers refuse other versions. Row
norms are not stored: they are recomputed from codes and scales on read. With zstd, D=512 and
block 64 this takes ~0.24x the bytes of float32 (0.266x uncompressed: 512 + 8 * 4 bytes a row).
"""

from __future__ import annotations

import pyarrow as pa

EMBEDDING_STORAGE_VERSION = "1"
EMBEDDING_STORAGE_NAME = "embedding_storage"
QUANTIZATION = "blockwise-absmax-int8"  # scale = max|x| / 127 per block, codes in [-127, 127]

META_SCHEMA = b"mmaudit.schema"
META_VERSION = b"mmaudit.version"
META_QUANTIZATION = b"mmaudit.quantization"
META_DIM = b"mmaudit.dim"
META_BLOCK_SIZE = b"mmaudit.block_size"


def embedding_storage_schema(dim: int, block_size: int, *, keyed: bool = False) -> pa.Schema:
    """The schema of a file of ``dim``-dimensional embeddings quantized in blocks of ``block_size``."""
    if dim <= 0 or block_size <= 0 or dim % block_size:
        raise ValueError(f"block_size {block_size} must divide the embedding dimension {dim}")
    # 'element' is the name parquet gives list items, so a read-back schema equals the written one.
    fields = [
        pa.field("codes", pa.binary(dim), nullable=False),
        pa.field(
            "scales",
            pa.list_(pa.field("element", pa.float32(), nullable=False), dim // block_size),
            nullable=False,
        ),
    ]
    if keyed:
        fields.insert(0, pa.field("key", pa.string(), nullable=False))
    return pa.schema(
        fields,
        metadata={
            META_SCHEMA: EMBEDDING_STORAGE_NAME.encode(),
            META_VERSION: EMBEDDING_STORAGE_VERSION.encode(),
            META_QUANTIZATION: QUANTIZATION.encode(),
            META_DIM: str(dim).encode(),
            META_BLOCK_SIZE: str(block_size).encode(),
        },
    )


def parse_embedding_storage_schema(schema: pa.Schema) -> tuple[int, int, bool]:
    """(dim, block_size, keyed) of a stored schema; ValueError naming what does not match version 1."""
    meta = schema.metadata or {}
    if meta.get(META_SCHEMA) != EMBEDDING_STORAGE_NAME.encode():
        raise ValueError("not an mmaudit block-int8 embedding file (schema metadata mmaudit.schema missing)")
    version = meta.get(META_VERSION, b"?").decode()
    if version != EMBEDDING_STORAGE_VERSION:
        raise ValueError(f"embedding file version {version}, this mmaudit reads {EMBEDDING_STORAGE_VERSION}")
    quantization = meta.get(META_QUANTIZATION, b"?").decode()
    if quantization != QUANTIZATION:
        raise ValueError(f"embedding file quantization {quantization!r}, expected {QUANTIZATION!r}")
    try:
        dim, block_size = int(meta[META_DIM]), int(meta[META_BLOCK_SIZE])
    except (KeyError, ValueError):
        raise ValueError(
            "embedding file metadata lacks an integer mmaudit.dim or mmaudit.block_size"
        ) from None
    keyed = "key" in schema.names
    expected = embedding_storage_schema(dim, block_size, keyed=keyed)
    for field in expected:
        if field.name not in schema.names:
            raise ValueError(f"embedding file lacks column {field.name!r}")
        got = schema.field(field.name).type
        if not got.equals(field.type):
            raise ValueError(f"embedding file column {field.name!r} is {got}, expected {field.type}")
    return dim, block_size, keyed
