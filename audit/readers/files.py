"""Opening input files: a sha256 computed from the bytes as they stream past, one-line errors."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import BinaryIO

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from audit.errors import InputFileError

HASH_CHUNK = 1 << 20


class HashingFile:
    """A read-only file wrapper that feeds sha256 every byte of the file exactly once, in order.

    Reads that continue where hashing stopped (parquet pages, tar streams) are hashed as they pass;
    a small jump ahead (parquet's 4-byte magic) is filled in; anything else read out of order (the
    footer, read first) is hashed by ``hexdigest``, which reads what was never hashed. So the digest
    is right whatever the read pattern, and a sequential reader pays for one pass only.
    """

    MAX_GAP = 1 << 16

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._h = hashlib.sha256()
        self._hashed = 0  # bytes [0, _hashed) are in the digest
        self._pos = f.tell()

    # the file protocol pyarrow and tarfile use
    @property
    def closed(self) -> bool:
        return self._f.closed

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self._f.seek(offset, whence)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        start = self._pos
        if self._hashed < start <= self._hashed + self.MAX_GAP:
            self._f.seek(self._hashed)
            self._update(self._f.read(start - self._hashed))
            self._f.seek(start)
        data = self._f.read(size)
        end = start + len(data)
        if start <= self._hashed < end:
            self._update(memoryview(data)[self._hashed - start :])
        self._pos = end
        return data

    def close(self) -> None:
        pass  # the opener owns the file

    def _update(self, data: bytes | memoryview) -> None:
        self._h.update(data)
        self._hashed += len(data)

    def hexdigest(self) -> str:
        """The file's sha256, reading whatever was not hashed yet (a parquet footer, tar padding)."""
        self._f.seek(self._hashed)
        while chunk := self._f.read(HASH_CHUNK):
            self._update(chunk)
        self._f.seek(self._pos)
        return self._h.hexdigest()


@contextlib.contextmanager
def open_input(url: str) -> Iterator[BinaryIO]:
    try:
        f = fsspec.open(url, "rb").open()
    except FileNotFoundError:
        raise InputFileError(f"{url}: no such file") from None
    with f:
        yield f


def read_bytes(url: str) -> bytes:
    """A whole file: only for files without image bytes (webdataset sidecars, embeddings.json)."""
    with open_input(url) as f:
        return f.read()


def parquet_error(url: str, e: Exception, at_row: int | None = None) -> InputFileError:
    first = (str(e).splitlines() or [""])[0]
    why = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in first)  # bytes of the file
    where = f" (its data at or after row {at_row} is corrupt)" if at_row is not None else ""
    return InputFileError(f"{url}: not a readable parquet file{where} ({why})")


def read_parquet_bytes(url: str, data: bytes) -> pa.Table:
    try:
        return pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as e:
        raise parquet_error(url, e) from None
