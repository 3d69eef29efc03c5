"""The run folder: where each output lives, and atomic writes (temp file + rename) to any fsspec URL."""

from __future__ import annotations

import json
import posixpath
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from audit.errors import OutputPathError


def check_output_folder(url: str, option: str = "--out") -> None:
    """Refuse an output folder that is, or lies under, an existing file, before anything is written
    (writing would fail halfway, or need to replace the user's file)."""
    fs, path = fsspec.core.url_to_fs(url)
    path = path.rstrip("/") or "/"
    current = path
    while True:
        if fs.isfile(current):
            shown = fs.unstrip_protocol(current) if _remote(fs) else current
            where = "is" if current == path else f"{shown} is"
            raise OutputPathError(f"{option} {url}: {where} an existing file, not a folder")
        if fs.isdir(current):
            return
        parent = posixpath.dirname(current)
        if parent in (current, ""):
            return
        current = parent


def _remote(fs: fsspec.AbstractFileSystem) -> bool:
    return fs.protocol not in ("file", ("file", "local"))


@dataclass(frozen=True)
class RunFolder:
    url: str

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return fsspec.core.url_to_fs(self.url)[0]

    @property
    def root(self) -> str:
        return fsspec.core.url_to_fs(self.url)[1]

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def url_of(self, *parts: str) -> str:
        """A full URL (with its protocol) for libraries that open paths themselves."""
        fs = self.fs
        path = self.path(*parts)
        return path if fs.protocol in ("file", ("file", "local")) else fs.unstrip_protocol(path)

    # --- layout -------------------------------------------------------------------------------
    def scores(self, shard_id: str) -> str:
        return self.path("scores", f"{shard_id}.parquet")

    def part(self, kind: str, shard_id: str) -> str:
        """Per-shard pieces of corpus-wide tables (flags, quarantine), merged at the end."""
        return self.path("parts", kind, f"{shard_id}.parquet")

    def shard_record(self, shard_id: str) -> str:
        return self.path("shards", f"{shard_id}.json")

    @property
    def summary(self) -> str:
        return self.path("summary.json")

    @property
    def manifest(self) -> str:
        return self.path("manifest.json")

    @property
    def flags(self) -> str:
        return self.path("flags.parquet")

    @property
    def quarantine(self) -> str:
        return self.path("quarantine.parquet")

    @property
    def decisions(self) -> str:
        return self.path("decisions.db")

    def report(self, name: str = "") -> str:
        return self.path("report", name) if name else self.path("report")

    # --- io -----------------------------------------------------------------------------------
    def _atomic(self, final: str, write) -> None:
        fs = self.fs
        fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with fs.open(tmp, "wb") as f:
                write(f)
            fs.mv(tmp, final)
        finally:
            if fs.exists(tmp):
                fs.rm(tmp)

    def write_parquet(self, path: str, table: pa.Table) -> None:
        self._atomic(path, lambda f: pq.write_table(table, f, compression="zstd"))

    def write_parquet_stream(self, path: str, schema: pa.Schema, tables: Iterable[pa.Table]) -> int:
        """Write tables one after another into one file (atomically, like write_parquet), so a large
        output never sits in memory whole; returns the rows written."""
        rows = 0

        def write(f) -> None:
            nonlocal rows
            with pq.ParquetWriter(f, schema, compression="zstd") as writer:
                for table in tables:
                    writer.write_table(table.cast(schema))
                    rows += table.num_rows

        self._atomic(path, write)
        return rows

    def write_bytes(self, path: str, data: bytes) -> None:
        self._atomic(path, lambda f: f.write(data))

    def write_json(self, path: str, doc: BaseModel | dict) -> None:
        text = doc.model_dump_json(indent=2) if isinstance(doc, BaseModel) else json.dumps(doc, indent=2)
        self.write_bytes(path, text.encode())

    def read_json(self, path: str) -> dict:
        with self.fs.open(path, "rb") as f:
            return json.loads(f.read())

    def read_parquet(
        self, path: str, schema: pa.Schema | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        with self.fs.open(path, "rb") as f:
            return pq.read_table(f, schema=schema, columns=columns)

    def parquet_rows(self, path: str) -> int:
        """Row count from the footer alone."""
        with self.fs.open(path, "rb") as f:
            return pq.read_metadata(f).num_rows

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def remove_stale_temp_files(self) -> int:
        """Temp files left by a writer that was killed before its rename. Called when a run starts;
        the rerun writes every piece they were meant to become."""
        if not self.fs.exists(self.root):
            return 0
        stale = [p for p in self.fs.find(self.root) if ".tmp-" in p.rsplit("/", 1)[-1]]
        for path in stale:
            self.fs.rm(path)
        return len(stale)

    def ls(self, *parts: str) -> list[str]:
        folder = self.path(*parts)
        if not self.fs.exists(folder):
            return []
        return sorted(p for p in self.fs.ls(folder, detail=False) if ".tmp-" not in p)
