"""The streaming shard reader shared by every format: batches of INGESTED_SCHEMA rows.

Memory is bounded by the batch, never by the shard; each format module (``parquet``,
``webdataset``, ``clip_retrieval``, ``datacomp``) yields the batches of its shards and computes the
shard's sha256 from the bytes as they stream past.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from audit.readers.normalize import SeenKeys, normalize
from audit.schemas import INGESTED_SCHEMA
from audit.shards import ShardSpec

# Rows per batch handed to the stages. A batch's image bytes and decoded pixels are what a worker
# holds at once (about batch_rows x (image bytes + decoded pixels)); a shard never is.
DEFAULT_BATCH_ROWS = 1024


@dataclass
class ShardData:
    table: pa.Table  # INGESTED_SCHEMA
    sha256: str
    notes: list[str]
    embedding_model: str | None = None  # the CLIP model precomputed embeddings came from, if known


@dataclass
class ShardReader:
    """One pass over a shard in batches of at most ``batch_rows`` rows (INGESTED_SCHEMA).

    ``row_index`` is the row's number within the whole shard and keys are the same as a whole-shard
    read gives. ``embedding_model`` is set before the first batch is yielded; ``sha256``, ``notes``
    and ``rows`` are final once ``batches()`` is exhausted.
    """

    spec: ShardSpec
    clip_model: str | None = None  # picks among the models a DataComp .npz carries
    batch_rows: int = DEFAULT_BATCH_ROWS
    sha256: str | None = None
    notes: list[str] = field(default_factory=list)
    embedding_model: str | None = None
    rows: int = 0
    _seen: SeenKeys = field(default_factory=SeenKeys, repr=False)
    _started: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {self.batch_rows}")

    def batches(self) -> Iterator[pa.Table]:
        if self._started:
            raise RuntimeError(f"{self.spec.path}: a ShardReader reads its shard once")
        self._started = True
        from audit.readers import FORMAT_READERS  # the registry imports every format module

        for table in FORMAT_READERS[self.spec.format](self):
            if table.num_rows:
                self.rows += table.num_rows
                yield table
            del table  # not held while the next batch is read

    @property
    def keys_repeated(self) -> int:
        """Rows whose key appeared earlier in this shard (final once ``batches()`` is exhausted)."""
        return self._seen.repeated

    def key_hashes(self) -> np.ndarray:
        """The shard's distinct key hashes, sorted: finalize counts keys repeated across shards."""
        return self._seen.sorted_unique()

    def _normalize(self, table: pa.Table, cols: dict[str, str], *, carries_images: bool) -> pa.Table:
        return normalize(
            table, cols, self.spec, carries_images=carries_images, start=self.rows, seen=self._seen
        )

    def read_all(self) -> ShardData:
        tables = list(self.batches())
        table = pa.concat_tables(tables) if tables else INGESTED_SCHEMA.empty_table()
        with contextlib.suppress(pa.ArrowInvalid, OverflowError):  # over 2 GiB of bytes: stays chunked
            table = table.combine_chunks()
        assert self.sha256 is not None
        return ShardData(table, self.sha256, self.notes, self.embedding_model)


def iter_shard(
    spec: ShardSpec, clip_model: str | None = None, batch_rows: int = DEFAULT_BATCH_ROWS
) -> ShardReader:
    """A streaming reader over ``spec``; nothing is opened until ``.batches()`` is iterated."""
    return ShardReader(spec, clip_model=clip_model, batch_rows=batch_rows)


def read_shard(spec: ShardSpec, clip_model: str | None = None) -> ShardData:
    """The whole shard as one table (holds every row in memory: use ``iter_shard`` for audits).
    ``clip_model`` picks among the models a DataComp .npz carries."""
    return iter_shard(spec, clip_model).read_all()
