"""Shard discovery and up-front validation: files, directories or globs of fsspec URLs.

Everything here reads at most a parquet footer per shard, so a bad run fails before any work
starts and before anything is written.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from audit.errors import ColumnTypeError, InputFileError, MissingColumnError
from audit.schemas import INPUT_FIELDS, REQUIRED_FIELDS

ShardFormat = Literal["laion_metadata", "img2dataset_parquet", "webdataset", "clip_retrieval", "datacomp"]


@dataclass(frozen=True)
class ShardSpec:
    shard_id: str
    path: str  # the shard's main file: parquet, tar, or clip-retrieval metadata parquet
    format: ShardFormat
    sidecar: str | None = None  # webdataset's parquet
    image_embeddings: str | None = None  # clip-retrieval .npy files
    text_embeddings: str | None = None
    fingerprint: str = ""  # set by shard_fingerprint() on the driver


def shard_fingerprint(spec: ShardSpec) -> str:
    """Size and modification time (or ETag) of each input file: a cheap stand-in for the content
    hash that costs one metadata call per file instead of reading terabytes on every rerun."""
    parts = []
    for url in (spec.path, spec.sidecar, spec.image_embeddings, spec.text_embeddings):
        if not url:
            continue
        fs, path = _fs(url)
        info = fs.info(path)
        stamp = info.get("ETag") or info.get("mtime") or info.get("LastModified") or info.get("created")
        parts.append(f"{info.get('size')}:{stamp}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def _unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return fs.unstrip_protocol(path) if fs.protocol not in ("file", ("file", "local")) else path


def _is_glob(url: str) -> bool:
    return any(c in url for c in "*?[")


def _clip_retrieval_shards(fs: fsspec.AbstractFileSystem, root: str) -> list[tuple[str, str, str]]:
    metas = sorted(fs.glob(posixpath.join(root, "metadata", "metadata_*.parquet")))
    if not metas:
        raise InputFileError(f"{root}: clip-retrieval folder has no metadata/metadata_N.parquet files")
    out = []
    for meta in metas:
        n = posixpath.basename(meta)[len("metadata_") : -len(".parquet")]
        img = posixpath.join(root, "img_emb", f"img_emb_{n}.npy")
        txt = posixpath.join(root, "text_emb", f"text_emb_{n}.npy")
        for p in (img, txt):
            if not fs.exists(p):
                raise InputFileError(f"{p}: missing embedding file for {meta}")
        out.append((meta, img, txt))
    return out


def _files_in_dir(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    return sorted(
        p for p in fs.ls(root, detail=False) if p.endswith((".parquet", ".tar")) and "_stats" not in p
    )


def discover_shards(inputs: list[str] | tuple[str, ...]) -> list[ShardSpec]:
    """Expand inputs into shard specs, one per file, with unique stable shard ids."""
    if not inputs:
        raise InputFileError("no input shards given (use --shards PATH, a directory or a glob)")
    found: list[tuple[str, ShardFormat, str | None, str | None, str | None]] = []
    for url in inputs:
        fs, path = _fs(url)
        if _is_glob(path):
            files = sorted(fs.glob(path))
            if not files:
                raise InputFileError(f"{url}: the glob matches no files")
        elif not fs.exists(path):
            raise InputFileError(f"{url}: no such file or directory")
        elif fs.isdir(path):
            if fs.exists(posixpath.join(path, "img_emb")):
                for meta, img, txt in _clip_retrieval_shards(fs, path):
                    found.append(
                        (_unstrip(fs, meta), "clip_retrieval", None, _unstrip(fs, img), _unstrip(fs, txt))
                    )
                continue
            files = _files_in_dir(fs, path)
            if not files:
                raise InputFileError(f"{url}: directory holds no .parquet or .tar shards")
        else:
            files = [path]
        tars = {f[: -len(".tar")] for f in files if f.endswith(".tar")}
        for f in files:
            if f.endswith(".tar"):
                side = f[: -len(".tar")] + ".parquet"
                found.append(
                    (
                        _unstrip(fs, f),
                        "webdataset",
                        _unstrip(fs, side) if fs.exists(side) else None,
                        None,
                        None,
                    )
                )
            elif f.endswith(".parquet"):
                if f[: -len(".parquet")] in tars:
                    continue  # a webdataset sidecar, read with its tar
                npz = f[: -len(".parquet")] + ".npz"
                if fs.exists(npz):  # DataComp: metadata parquet + embeddings .npz of the same stem
                    found.append((_unstrip(fs, f), "datacomp", None, _unstrip(fs, npz), None))
                    continue
                found.append((_unstrip(fs, f), _parquet_format(_unstrip(fs, f)), None, None, None))
            else:
                raise InputFileError(
                    f"{f}: unknown shard type (expected .parquet, .tar or a clip-retrieval folder)"
                )
    ids = _shard_ids([f[0] for f in found])
    return [
        ShardSpec(sid, p, fmt, side, img, txt)
        for sid, (p, fmt, side, img, txt) in zip(ids, found, strict=True)
    ]


def _shard_ids(paths: list[str]) -> list[str]:
    """File stems, prefixed with parent folders only where two stems collide."""
    if len(set(paths)) != len(paths):
        dup = next(p for p, c in Counter(paths).items() if c > 1)
        raise InputFileError(f"{dup}: the same shard is given twice")
    depth = 0
    while True:
        ids = ["__".join(_parts(p)[-(depth + 1) :]) for p in paths]
        if len(set(ids)) == len(ids):
            return ids
        depth += 1


def _parts(path: str) -> list[str]:
    parts = [p for p in path.split("://")[-1].split("/") if p]
    parts[-1] = parts[-1].rsplit(".", 1)[0]
    return parts


def column_map(schema: pa.Schema) -> dict[str, str]:
    """canonical field -> the shard's actual column name, matched case-insensitively."""
    lower = {name.lower(): name for name in schema.names}
    out: dict[str, str] = {}
    for field in INPUT_FIELDS.values():
        for alias in field.aliases:
            if alias in lower:
                out[field.name] = lower[alias]
                break
    return out


def _kind(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "floating"
    if pa.types.is_null(t):
        return "null"
    return str(t)


def read_parquet_schema(url: str) -> pa.Schema:
    fs, path = _fs(url)
    try:
        with fs.open(path, "rb") as f:
            return pq.read_schema(f)
    except FileNotFoundError:
        raise InputFileError(f"{url}: no such file") from None
    except (pa.ArrowInvalid, OSError) as e:
        raise InputFileError(f"{url}: not a readable parquet file ({str(e).splitlines()[0]})") from None


def _parquet_format(url: str) -> ShardFormat:
    names = {n.lower() for n in read_parquet_schema(url).names}
    if "key" in names and ("caption" in names or "jpg" in names):
        return "img2dataset_parquet"
    return "laion_metadata"


def check_columns(url: str, schema: pa.Schema, fmt: ShardFormat) -> dict[str, str]:
    """Fail with one line naming the file and column if a required column is missing or mistyped."""
    cols = column_map(schema)
    for name in REQUIRED_FIELDS[fmt]:
        if name not in cols:
            aliases = " or ".join(repr(a) for a in INPUT_FIELDS[name].aliases)
            raise MissingColumnError(f"{url}: required column {aliases} is missing ({fmt} format)")
    for name, actual in cols.items():
        kind = _kind(schema.field(actual).type)
        if kind != "null" and kind not in INPUT_FIELDS[name].kinds:
            allowed = "/".join(INPUT_FIELDS[name].kinds)
            raise ColumnTypeError(
                f"{url}: column '{actual}' has type {schema.field(actual).type}, expected {allowed}"
            )
    return cols


def validate_shard(spec: ShardSpec) -> None:
    """Read the footer (or open the tar) and check columns; raise a one-line AuditError."""
    if spec.format == "webdataset":
        fs, path = _fs(spec.path)
        if not fs.exists(path):
            raise InputFileError(f"{spec.path}: no such file")
        if spec.sidecar:
            check_columns(spec.sidecar, read_parquet_schema(spec.sidecar), "webdataset")
        return
    check_columns(spec.path, read_parquet_schema(spec.path), spec.format)
