"""Drop samples of a webdataset tar (and their sidecar rows) by row index, member by member.

Row indices are the reader's (audit.readers): samples in tar order (a run of consecutive members
with one KEY; a suffix seen again starts a new sample), then the sidecar rows no sample matched
(failed downloads), in sidecar order. A removed sample loses all its members and the sidecar row
it matched (unless a kept sample matches the same row); a removed sidecar-only row loses its
sidecar row. Directories and members without a KEY.EXT name belong to no row and are kept. Each
member's bytes are copied through in chunks: memory holds one TarInfo, never a sample or a shard.
"""

from __future__ import annotations

import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from audit.apply_removals.outputs import Opener, Staging
from audit.apply_removals.parquet_rows import check_keys
from audit.apply_removals.plan import ShardJob
from audit.errors import InputFileError
from audit.readers import HashingFile, sample_key
from audit.shards import check_columns

_COMPRESSION = {b"\x1f\x8b": "gz", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}


@dataclass(frozen=True)
class TarFiltered:
    rows_in: int
    rows_out: int
    sha256: str
    sidecar_drop: np.ndarray  # sidecar row indices to drop, sorted


class _Sidecar:
    """What the reader takes from the sidecar: the first row of each key, and its sample ids."""

    def __init__(self, table: pa.Table | None, source: str | None) -> None:
        cols = check_columns(source or "", table.schema, "webdataset") if table is not None else {}
        self.keys: list[str] = (
            table.column(cols["key"]).cast(pa.string()).to_pylist()
            if table is not None and "key" in cols
            else []
        )
        self.index: dict[str, int] = {}
        for i, k in enumerate(self.keys):
            self.index.setdefault(k, i)
        self.sample_ids = (
            table.column(cols["sample_id"]).cast(pa.string()).to_pylist()
            if table is not None and "sample_id" in cols
            else None
        )

    def key_of(self, tar_key: str, side_row: int | None, shard_id: str, row: int) -> str:
        if self.sample_ids is not None:
            k = self.sample_ids[side_row] if side_row is not None else None
        else:
            k = tar_key
        return k if k not in (None, "") else f"{shard_id}:{row}"


def _mode(src: BinaryIO) -> str:
    head = src.read(6)
    src.seek(0)
    comp = next((c for magic, c in _COMPRESSION.items() if head.startswith(magic)), "")
    return f"w|{comp}" if comp else "w|"


def filter_tar(
    src: BinaryIO,
    dst: BinaryIO,
    sidecar: pa.Table | None,
    drop: set[int],
    expected_keys: Mapping[int, str],
    *,
    shard_id: str,
    source: str,
    sidecar_source: str | None,
) -> TarFiltered:
    side = _Sidecar(sidecar, sidecar_source)
    mode = _mode(src)
    hashed = HashingFile(src)
    used_kept: set[int] = set()
    used_dropped: set[int] = set()
    used: set[int] = set()
    got: dict[int, str] = {}
    index, current, seen, keep = -1, None, set(), True
    try:
        with tarfile.open(fileobj=hashed, mode="r|*") as tar, tarfile.open(fileobj=dst, mode=mode) as out:  # type: ignore[call-overload]
            for member in tar:
                tar.members = []  # stream mode keeps every TarInfo otherwise
                split = None if member.isdir() else sample_key(member.name)
                if split is not None:
                    key, suffix = split
                    if current is None or key != current or suffix in seen:
                        index, current, seen = index + 1, key, set()
                        side_row = side.index.get(key)
                        keep = index not in drop
                        if side_row is not None:
                            used.add(side_row)
                            (used_kept if keep else used_dropped).add(side_row)
                        if not keep:
                            got[index] = side.key_of(key, side_row, shard_id, index)
                    seen.add(suffix)
                    if not keep:
                        continue
                # kept samples, directories and members of no sample go through unchanged
                out.addfile(member, tar.extractfile(member) if member.isfile() else None)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise InputFileError(f"{source}: not a readable tar file ({e})") from None
    samples = index + 1
    unused = [row for row in range(len(side.keys)) if row not in used]
    side_drop = used_dropped - used_kept
    for j, row in enumerate(unused):  # sidecar-only rows follow the samples
        if samples + j in drop:
            side_drop.add(row)
            got[samples + j] = side.key_of(side.keys[row], row, shard_id, samples + j)
    check_keys(source, expected_keys, got)
    rows_in = samples + len(unused)
    return TarFiltered(rows_in, rows_in - len(got), hashed.hexdigest(), np.array(sorted(side_drop), np.int64))


def clean_webdataset_shard(job: ShardJob, staging: Staging, open_src: Opener) -> TarFiltered:
    """The tar, and its sidecar parquet when it has one (read whole, as the reader does: no bytes)."""
    import pyarrow.parquet as pq

    from audit.apply_removals.parquet_rows import filter_parquet

    side_url = job.sources.get("sidecar")
    sidecar = None
    if side_url:
        with open_src(side_url) as f:
            sidecar = pq.read_table(f)
    tar_out = staging.file(job.targets["main"])
    with open_src(job.sources["main"]) as src, tar_out.open() as dst:
        done = filter_tar(src, dst, sidecar, set(job.drop.tolist()), job.keys, shard_id=job.record.shard_id,
                          source=job.sources["main"], sidecar_source=side_url)  # fmt: skip
    if side_url:
        side_out = staging.file(job.targets["sidecar"])
        with open_src(side_url) as src, side_out.open() as dst:
            filter_parquet(src, dst, done.sidecar_drop, {}, shard_id=job.record.shard_id, source=side_url,
                           fmt="webdataset")  # fmt: skip
    return done
