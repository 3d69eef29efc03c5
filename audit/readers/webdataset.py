"""webdataset shards: tar members streamed sample by sample, with an optional sidecar parquet."""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from audit.errors import InputFileError
from audit.readers.base import ShardReader
from audit.readers.files import HASH_CHUNK, HashingFile, open_input, read_bytes, read_parquet_bytes
from audit.shards import check_columns
from audit.tables import set_columns

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class _Sample:
    key: str
    members: dict[str, bytes]  # ".jpg" -> bytes, ...
    side_row: int | None  # the sidecar row of this key, if any
    not_regular: list[str] = field(default_factory=list)  # "b.jpg is a symbolic link to 'a.jpg'"


# quarantine_detail of a sample with non-regular members is cut to this many characters
_DETAIL_CHARS = 500


def webdataset_shard(r: ShardReader) -> Iterator[pa.Table]:
    """Samples in tar order (consecutive members of one key form a sample, as webdataset defines),
    then the sidecar rows that had no member in the tar (failed downloads), in sidecar order.
    A sample with a symlink, hard link or other non-regular member is quarantined as
    ``member_not_regular`` (its content is not in the tar, and such members are a hostile tar's
    tools)."""
    spec = r.spec
    if spec.sidecar:
        side = read_parquet_bytes(spec.sidecar, read_bytes(spec.sidecar))  # no image bytes: small
        side_cols = check_columns(spec.sidecar, side.schema, "webdataset")
    else:
        side, side_cols = None, {}
    side_keys = side.column(side_cols["key"]).cast(pa.string()).to_pylist() if "key" in side_cols else []
    side_index: dict[str, int] = {}
    for i, k in enumerate(side_keys):
        side_index.setdefault(k, i)
    used = np.zeros(len(side_keys), dtype=bool)

    def table_of(samples: list[_Sample]) -> pa.Table:
        table = _webdataset_table(samples, side, side_cols)
        cols = check_columns(spec.path, table.schema, "webdataset")
        return _quarantine_not_regular(r._normalize(table, cols, carries_images=True), samples)

    pending: list[_Sample] = []
    for sample in _tar_samples(spec.path, lambda digest: setattr(r, "sha256", digest), r.notes):
        sample.side_row = side_index.get(sample.key)
        if sample.side_row is not None:
            used[sample.side_row] = True
        pending.append(sample)
        if len(pending) >= r.batch_rows:
            yield table_of(pending)
            pending = []
    for row in np.flatnonzero(~used):
        pending.append(_Sample(side_keys[row], {}, int(row)))
        if len(pending) >= r.batch_rows:
            yield table_of(pending)
            pending = []
    if pending:
        yield table_of(pending)


def _quarantine_not_regular(table: pa.Table, samples: list[_Sample]) -> pa.Table:
    if not any(s.not_regular for s in samples):
        return table
    reasons = table.column("quarantine_reason").to_pylist()
    details = table.column("quarantine_detail").to_pylist()
    for i, s in enumerate(samples):
        if s.not_regular:
            reasons[i] = "member_not_regular"
            details[i] = "; ".join(s.not_regular)[:_DETAIL_CHARS]
    return set_columns(
        table,
        {
            "quarantine_reason": pa.array(reasons, pa.string()),
            "quarantine_detail": pa.array(details, pa.string()),
        },
    )


def sample_key(name: str) -> tuple[str, str] | None:
    """(KEY, ".ext") of a tar member as webdataset splits it: the full path up to the first dot of
    the file name, so ``x/dup.jpg`` and ``y/dup.jpg`` are two samples; None without a KEY.EXT name."""
    folder, base = posixpath.split(name)
    stem, _, suffix = base.partition(".")
    if not stem or not suffix:
        return None
    return posixpath.join(folder, stem), "." + suffix.lower()


def _not_regular(member: tarfile.TarInfo) -> str:
    if member.issym():
        what = f"a symbolic link to {member.linkname!r}"
    elif member.islnk():
        what = f"a hard link to {member.linkname!r}"
    elif member.isfifo():
        what = "a fifo"
    elif member.ischr() or member.isblk():
        what = "a device"
    else:
        what = f"not a regular file (tar type {member.type!r})"
    return f"{member.name} is {what}"


def _tar_samples(url: str, on_digest: Callable[[str], None], notes: list[str]) -> Iterator[_Sample]:
    """One sample per run of consecutive members with the same KEY, streamed; one sample in memory.
    A suffix seen again within a run starts a new sample (so a repeated member is a row, not
    overwritten). Members without a KEY.EXT name belong to no sample: counted in ``notes``."""
    with open_input(url) as raw:
        f = HashingFile(raw)
        sample: _Sample | None = None
        seen: set[str] = set()  # suffixes of the current sample, regular or not
        unnamed: list[str] = []
        try:
            with tarfile.open(fileobj=f, mode="r|*") as tar:  # type: ignore[call-overload]
                for member in tar:
                    tar.members = []  # stream mode keeps every TarInfo otherwise
                    if member.isdir():
                        continue
                    split = sample_key(member.name)
                    if split is None:
                        unnamed.append(member.name)
                        continue
                    key, suffix = split
                    if sample is None or key != sample.key or suffix in seen:
                        if sample is not None:
                            yield sample
                        sample, seen = _Sample(key, {}, None), set()
                    seen.add(suffix)
                    if member.isfile():
                        fh = tar.extractfile(member)
                        sample.members[suffix] = fh.read() if fh else b""
                    else:
                        sample.not_regular.append(_not_regular(member))
                end, plain = tar.offset, getattr(tar.fileobj, "comptype", "tar") == "tar"
        except (tarfile.TarError, EOFError, OSError) as e:
            raise InputFileError(f"{url}: not a readable tar file ({e})") from None
        if plain:
            _check_tar_end(url, raw, end)
        if sample is not None:
            yield sample
        if unnamed:
            notes.append(
                f"{url}: {len(unnamed)} tar members have no KEY.EXT name and belong to no sample "
                f"(webdataset naming), skipped: {', '.join(repr(n) for n in unnamed[:3])}"
                f"{' ...' if len(unnamed) > 3 else ''}"
            )
        on_digest(f.hexdigest())


def _check_tar_end(url: str, raw: BinaryIO, end: int) -> None:
    """tarfile stops quietly at the first header it cannot parse; past the archive's end there
    must be zero padding only, else the tar is truncated or corrupt and rows would be lost."""
    raw.seek(end)
    while chunk := raw.read(HASH_CHUNK):
        if chunk.strip(b"\0"):
            raise InputFileError(
                f"{url}: not a readable tar file (no valid member header at byte {end}: "
                "the tar is truncated or corrupt)"
            )


def _json_member(data: bytes | None) -> dict:
    if data is None:
        return {}
    try:
        meta = json.loads(data)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _webdataset_table(samples: list[_Sample], side: pa.Table | None, cols: dict[str, str]) -> pa.Table:
    captions: list[bytes | None] = []
    images: list[bytes | None] = []
    urls: list[str | None] = []
    side_caption = side.column(cols["caption"]) if side is not None and "caption" in cols else None
    for s in samples:
        txt = s.members.get(".txt")
        if txt is None and s.side_row is not None and side_caption is not None:
            cap = side_caption[s.side_row].as_py()
            txt = cap.encode("utf-8") if isinstance(cap, str) else cap
        captions.append(txt)
        images.append(next((s.members[x] for x in IMAGE_SUFFIXES if x in s.members), None))
        url = _json_member(s.members.get(".json")).get("url")
        urls.append(url if isinstance(url, str) else None)
    columns: dict[str, pa.Array] = {
        "key": pa.array([s.key for s in samples], pa.string()),
        "caption": pa.array(captions, pa.binary()),
        "jpg": pa.array(images, pa.binary()),
    }
    if side is not None:
        take = pa.array([s.side_row for s in samples], pa.int64())
        for canonical, actual in cols.items():
            if canonical not in ("key", "caption", "image"):
                columns[actual] = side.column(actual).take(take)
    if "url" not in cols:
        columns["url"] = pa.array(urls, pa.string())
    return pa.table(columns)
