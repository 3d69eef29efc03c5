"""Files of the cleaned set: written under a temporary name beside their final path, renamed only
when the whole shard is written and checked; byte-for-byte copies hash what they copy."""

from __future__ import annotations

import hashlib
import posixpath
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import BinaryIO

import fsspec

COPY_CHUNK = 1 << 20
# opens a source URL for reading (audit.apply_removals.open_source)
Opener = Callable[[str], AbstractContextManager[BinaryIO]]
TEMP_MARK = ".tmp-"


class HashingWriter:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._h = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self._h.update(data)
        self.bytes += len(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def tell(self) -> int:
        return self.bytes

    @property
    def closed(self) -> bool:
        return self._f.closed

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        pass  # the opener owns the file

    def hexdigest(self) -> str:
        return self._h.hexdigest()


@dataclass
class StagedFile:
    """One output file being written: ``open()`` it, then ``commit()`` or ``discard()``."""

    fs: fsspec.AbstractFileSystem
    path: str
    tmp: str = ""
    sha256: str = ""
    bytes: int = 0

    def __post_init__(self) -> None:
        self.tmp = f"{self.path}{TEMP_MARK}{uuid.uuid4().hex[:8]}"

    def open(self) -> _Writing:
        self.fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
        return _Writing(self)

    def commit(self) -> None:
        self.fs.mv(self.tmp, self.path)

    def discard(self) -> None:
        if self.fs.exists(self.tmp):
            self.fs.rm(self.tmp)


class _Writing:
    def __init__(self, staged: StagedFile) -> None:
        self.staged = staged
        self.raw = staged.fs.open(staged.tmp, "wb")
        self.f = HashingWriter(self.raw)

    def __enter__(self) -> HashingWriter:
        return self.f

    def __exit__(self, *exc: object) -> None:
        self.raw.close()
        self.staged.sha256, self.staged.bytes = self.f.hexdigest(), self.f.bytes


@dataclass
class Staging:
    """The output files of one shard; all are discarded unless all are committed."""

    fs: fsspec.AbstractFileSystem
    files: list[StagedFile] = field(default_factory=list)

    def file(self, path: str) -> StagedFile:
        staged = StagedFile(self.fs, path)
        self.files.append(staged)
        return staged

    def commit(self) -> None:
        for f in self.files:
            f.commit()

    def discard(self) -> None:
        for f in self.files:
            f.discard()


def copy_stream(src: BinaryIO, dst: HashingWriter) -> str:
    """Copy ``src`` to ``dst`` chunk by chunk; returns the sha256 of what was read."""
    h = hashlib.sha256()
    while chunk := src.read(COPY_CHUNK):
        h.update(chunk)
        dst.write(chunk)
    return h.hexdigest()


def stale_temp_files(fs: fsspec.AbstractFileSystem, root: str) -> Iterator[str]:
    if not fs.exists(root):
        return
    for path in fs.find(root):
        if TEMP_MARK in posixpath.basename(path):
            yield path
