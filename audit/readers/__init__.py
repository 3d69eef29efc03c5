"""Read one shard of any supported format into the canonical ingested table, batch by batch.

One module per input format over a shared base (after datatrove's readers/):

- ``base``: ``ShardReader`` (one streaming pass, batches of ``INGESTED_SCHEMA``), ``iter_shard``,
  ``read_shard``;
- ``normalize``: the one mapping of a format's columns onto ``INGESTED_SCHEMA`` (captions, side
  problems, keys counted by ``SeenKeys``, row ids);
- ``files``: opening inputs, ``HashingFile`` (the shard's sha256 from the bytes as they stream);
- ``parquet`` (LAION metadata, img2dataset), ``webdataset``, ``embeddings`` (.npy/.npz row
  slices), ``clip_retrieval``, ``datacomp``.

Side problems (null, empty or non-UTF-8 caption; missing or empty image) are recorded in
``caption_problem`` / ``image_problem``: the row is still audited on its other side, and only the
stages quarantine a row with neither. Embedding rows that do not line up are recorded in
``quarantine_reason``. Repeated keys are counted, never dropped. Nothing is dropped here.

Memory is bounded by the batch, never by the shard: parquet is read page by page
(``pq.ParquetFile.iter_batches``), webdataset tars are streamed member by member, embedding
files are read a slice of rows at a time, and the shard's sha256 is computed from the bytes as
they stream past. ``read_shard`` (the whole shard as one table) is kept for small shards and for
callers that need one row: it is built on the same streaming reader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa

from audit.readers.base import DEFAULT_BATCH_ROWS, ShardData, ShardReader, iter_shard, read_shard
from audit.readers.clip_retrieval import clip_retrieval_shard
from audit.readers.datacomp import datacomp_shard
from audit.readers.embeddings import NpyRows, attach_embeddings
from audit.readers.files import HashingFile
from audit.readers.normalize import SeenKeys, normalize
from audit.readers.parquet import PARQUET_BUFFER_BYTES, parquet_shard
from audit.readers.webdataset import IMAGE_SUFFIXES, sample_key, webdataset_shard

# format name (audit.shards.ShardFormat) -> the generator of its batches
FORMAT_READERS: dict[str, Callable[[ShardReader], Iterator[pa.Table]]] = {
    "laion_metadata": parquet_shard,
    "img2dataset_parquet": parquet_shard,
    "webdataset": webdataset_shard,
    "clip_retrieval": clip_retrieval_shard,
    "datacomp": datacomp_shard,
}

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "FORMAT_READERS",
    "IMAGE_SUFFIXES",
    "PARQUET_BUFFER_BYTES",
    "HashingFile",
    "NpyRows",
    "SeenKeys",
    "ShardData",
    "ShardReader",
    "attach_embeddings",
    "iter_shard",
    "normalize",
    "read_shard",
    "sample_key",
]
