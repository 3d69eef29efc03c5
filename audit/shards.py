"""Shard discovery and up-front validation: files, directories or globs of fsspec URLs.

Discovery reads directory listings only. Validation reads, per shard, at most a parquet footer,
the first tar block, the .npy headers and a .npz's zip directory, so a bad run fails before any
work starts and before anything is written.

What an input means:
- a file: that shard (``.parquet`` or ``.tar``; a ``.tar``'s same-stem ``.parquet`` is its
  sidecar, a ``.parquet``'s same-stem ``.npz`` makes it a DataComp shard);
- a folder: every shard file below it, at any depth, such as ``mmaudit fetch``'s
  ``OUT/<shard>/00000.parquet``. A folder holding ``img_emb/`` is one clip-retrieval set. Names
  starting with ``.`` or ``_`` are skipped (pyarrow's convention: ``_metadata``, ``_SUCCESS``,
  img2dataset's ``_tmp``), and so are mmaudit run folders; other files (``fetch.json``,
  ``*_stats.json``) are not shards and are ignored;
- a glob: its matches, files and folders as above; matches that are not shards are ignored.
The same file reached through two paths (a symlink, a hard link, a folder given twice) is one
shard, read once, and a warning says so.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import posixpath
import tarfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from audit.errors import ColumnTypeError, DuplicateColumnError, InputFileError, MissingColumnError
from audit.schemas import INPUT_FIELDS, REQUIRED_FIELDS

log = logging.getLogger(__name__)

ShardFormat = Literal["laion_metadata", "img2dataset_parquet", "webdataset", "clip_retrieval", "datacomp"]

SHARD_SUFFIXES = (".parquet", ".tar")
SKIPPED_PREFIXES = (".", "_")
# A folder with a manifest.json and one of these subfolders is an mmaudit run folder (RunFolder's
# layout); a manifest.json alone counts if it reads like one (a run that stopped early).
RUN_MANIFEST = "manifest.json"
RUN_SUBFOLDERS = ("shards", "scores", "parts")
_RUN_MANIFEST_MARKS = (b'"run_name"', b'"config_hash"')
# DataComp's .npz keys: <prefix>_img / <prefix>_txt, one prefix per CLIP model
DATACOMP_MODELS = {"b32": "ViT-B-32", "l14": "ViT-L-14"}
TAR_BLOCK = 512
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz: tarfile's r|*


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


def _glob_root(path: str) -> str:
    """The folder a glob's matches all lie in: its leading components without wildcards."""
    parts = path.split("/")
    fixed = next(i for i, p in enumerate(parts) if _is_glob(p))
    return "/".join(parts[:fixed]) or "/"


def _canonical(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A folder's path with symlinks resolved (local files) for containment checks."""
    return os.path.realpath(path) if isinstance(fs, LocalFileSystem) else path.rstrip("/")


# --- discovery ------------------------------------------------------------------------------------


@dataclass
class _Found:
    """Shard files and clip-retrieval folders of one input, plus every file path its listings saw
    (so sidecars and .npz files are paired without a metadata call each)."""

    files: set[str] = field(default_factory=set)
    clip_folders: set[str] = field(default_factory=set)
    listed: set[str] | None = field(default_factory=set)  # None: no listing (a single file)
    in_run_folders: int = 0

    def add(self, other: _Found) -> None:
        self.files |= other.files
        self.clip_folders |= other.clip_folders
        if self.listed is not None and other.listed is not None:
            self.listed |= other.listed
        self.in_run_folders += other.in_run_folders


def _name(entry: dict) -> str:
    return posixpath.basename(entry["name"].rstrip("/"))


def _followed(entry: dict) -> dict:
    """A listing entry with a local symlink's type taken from its target (fsspec says "other");
    a broken link stays "other"."""
    if entry.get("islink") and entry["type"] == "other":
        path = entry["name"]
        kind = "directory" if os.path.isdir(path) else "file" if os.path.isfile(path) else "other"
        return {**entry, "type": kind}
    return entry


def _is_run_folder(fs: fsspec.AbstractFileSystem, folder: str, entries: dict[str, dict]) -> bool:
    manifest = entries.get(RUN_MANIFEST)
    if manifest is None or manifest["type"] != "file":
        return False
    if any(entries.get(sub, {}).get("type") == "directory" for sub in RUN_SUBFOLDERS):
        return True
    try:
        head = fs.cat_file(posixpath.join(folder, RUN_MANIFEST), start=0, end=1 << 20)
    except OSError:
        return False
    return all(mark in head for mark in _RUN_MANIFEST_MARKS)


class _Listings:
    """fs.ls of each folder, once per discovery."""

    def __init__(self, fs: fsspec.AbstractFileSystem) -> None:
        self.fs = fs
        self._entries: dict[str, dict[str, dict]] = {}
        self._run: dict[str, bool] = {}

    def entries(self, folder: str) -> dict[str, dict]:
        if folder not in self._entries:
            self._entries[folder] = {_name(e): _followed(e) for e in self.fs.ls(folder, detail=True)}
        return self._entries[folder]

    def is_run_folder(self, folder: str) -> bool:
        if folder not in self._run:
            try:
                entries = self.entries(folder)
            except (FileNotFoundError, NotADirectoryError):
                entries = {}
            self._run[folder] = _is_run_folder(self.fs, folder, entries)
        return self._run[folder]


def _walk(listings: _Listings, root: str, *, explicit: bool) -> _Found:
    """Shard files and clip-retrieval folders at any depth below ``root``."""
    fs = listings.fs
    found = _Found()
    # (folder, the resolved folders above it): a symlink back up the tree is not followed again,
    # while a symlink to a sibling is, and its files are then deduplicated as the same files
    stack: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    while stack:
        folder, above = stack.pop()
        resolved = _canonical(fs, folder)
        if resolved in above:
            continue
        entries = listings.entries(folder)
        if listings.is_run_folder(folder):
            if explicit and folder == root:
                raise InputFileError(
                    f"{root}: an mmaudit run folder (it has {RUN_MANIFEST}): its files are a run's "
                    "outputs, not shards"
                )
            found.in_run_folders += 1
            continue
        img_emb = entries.get("img_emb")
        if img_emb is not None and img_emb["type"] == "directory":
            found.clip_folders.add(folder)
            continue
        for name, entry in entries.items():
            if name.startswith(SKIPPED_PREFIXES):
                continue
            path = entry["name"].rstrip("/")
            if entry["type"] == "directory":
                stack.append((path, above | {resolved}))
                continue
            assert found.listed is not None
            found.listed.add(path)
            if name.endswith(SHARD_SUFFIXES):
                if entry["type"] != "file":  # a broken symlink, a fifo ...
                    raise InputFileError(_not_regular(path, entry))
                found.files.add(path)
    return found


def _not_regular(path: str, entry: dict) -> str:
    if entry.get("islink") and entry.get("destination"):
        return f"{path}: a broken symbolic link (to {entry['destination']}), not a shard file"
    return f"{path}: not a regular file"


def _glob(listings: _Listings, url: str, path: str) -> _Found:
    fs = listings.fs
    matches = fs.glob(path, detail=True)
    if not matches:
        raise InputFileError(f"{url}: the glob matches no files")
    root = _glob_root(path)
    found = _Found()
    for match, entry in sorted(matches.items()):
        match, entry = match.rstrip("/"), _followed(entry)
        below = posixpath.relpath(match, root).split("/") if match != root else []
        if any(part.startswith(SKIPPED_PREFIXES) for part in below):
            continue
        if _inside_run_folder(listings, match, root):
            found.in_run_folders += 1
            continue
        if entry["type"] == "directory":
            found.add(_walk(listings, match, explicit=False))
        elif match.endswith(SHARD_SUFFIXES):
            if entry["type"] != "file":
                raise InputFileError(_not_regular(match, entry))
            found.files.add(match)
        elif found.listed is not None:
            found.listed.add(match)  # fetch.json, *_stats.json, .npz sidecars ...: not shards
    if not found.files and not found.clip_folders:
        why = f" ({found.in_run_folders} matches lie in mmaudit run folders)" if found.in_run_folders else ""
        raise InputFileError(
            f"{url}: the glob matches no shard files (.parquet, .tar or clip-retrieval folders){why}"
        )
    found.listed = None  # globs list only what they match: pair sidecars by looking them up
    return found


def _inside_run_folder(listings: _Listings, path: str, root: str) -> bool:
    """Whether ``path`` lies in a run folder at or below ``root`` (the glob's fixed folder)."""
    folder = posixpath.dirname(path)
    while True:
        if listings.is_run_folder(folder):
            return True
        if folder == root or len(folder) <= len(root) or folder in ("", "/"):
            return False
        folder = posixpath.dirname(folder)


def _expand(url: str) -> tuple[fsspec.AbstractFileSystem, _Found]:
    fs, path = _fs(url)
    listings = _Listings(fs)
    if _is_glob(path):
        return fs, _glob(listings, url, path)
    if not fs.exists(path):
        raise InputFileError(f"{url}: no such file or directory")
    if fs.isdir(path):
        found = _walk(listings, path.rstrip("/"), explicit=True)
        if not found.files and not found.clip_folders:
            raise InputFileError(f"{url}: directory holds no .parquet or .tar shards")
        return fs, found
    if not path.endswith(SHARD_SUFFIXES):
        raise InputFileError(
            f"{path}: unknown shard type (expected .parquet, .tar or a clip-retrieval folder)"
        )
    return fs, _Found(files={path}, listed=None)


def _exists(fs: fsspec.AbstractFileSystem, found: _Found, path: str) -> bool:
    return path in found.listed if found.listed is not None else fs.exists(path)


class _SameFiles:
    """Which shard files were seen already, by file identity (device and inode for local files, so
    symlinks, hard links and a folder given twice all name one file)."""

    def __init__(self) -> None:
        self._first: dict[tuple, str] = {}
        self.dropped: list[tuple[str, str]] = []  # (path given again, the path kept)

    def first_time(self, fs: fsspec.AbstractFileSystem, path: str) -> bool:
        ident = self._identity(fs, path)
        if ident in self._first:
            self.dropped.append((path, self._first[ident]))
            return False
        self._first[ident] = path
        return True

    @staticmethod
    def _identity(fs: fsspec.AbstractFileSystem, path: str) -> tuple:
        if isinstance(fs, LocalFileSystem):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise InputFileError(f"{path}: no such file (a broken symbolic link?)") from None
            return ("local", st.st_dev, st.st_ino)
        return (str(fs.protocol), path)

    def warn(self) -> None:
        if not self.dropped:
            return
        again, kept = self.dropped[0]
        more = f" (and {len(self.dropped) - 1} more)" if len(self.dropped) > 1 else ""
        n = len(self.dropped)
        log.warning(
            "%d %s to shard files already given (symlinks, hard links or a folder given twice) skipped: "
            "each file is read once; %s is the same file as %s%s",
            n, "path" if n == 1 else "paths", again, kept, more,
        )  # fmt: skip


def discover_shards(inputs: list[str] | tuple[str, ...], *, out: str | None = None) -> list[ShardSpec]:
    """Expand inputs into shard specs, one per file, with unique stable shard ids.

    ``out``, the run folder, must not lie in an input folder (its outputs would be read as
    shards by the next run): see ``check_out_outside_inputs``.
    """
    if not inputs:
        raise InputFileError("no input shards given (use --shards PATH, a directory or a glob)")
    if out is not None:
        check_out_outside_inputs(inputs, out)
    found: list[tuple[str, ShardFormat, str | None, str | None, str | None]] = []
    same = _SameFiles()
    for url in inputs:
        fs, got = _expand(url)
        if got.in_run_folders:
            log.info("%s: skipped %d mmaudit run folders", url, got.in_run_folders)
        for root in sorted(got.clip_folders):
            for meta, img, txt in _clip_retrieval_shards(fs, root):
                if same.first_time(fs, meta):
                    found.append(
                        (_unstrip(fs, meta), "clip_retrieval", None, _unstrip(fs, img), _unstrip(fs, txt))
                    )
        files = sorted(got.files)
        tars = {f[: -len(".tar")] for f in files if f.endswith(".tar")}
        for f in files:
            if f.endswith(".parquet") and f[: -len(".parquet")] in tars:
                continue  # a webdataset sidecar, read with its tar
            if not same.first_time(fs, f):
                continue
            stem = f.rsplit(".", 1)[0]
            if f.endswith(".tar"):
                side = stem + ".parquet"
                sidecar = _unstrip(fs, side) if _exists(fs, got, side) else None
                found.append((_unstrip(fs, f), "webdataset", sidecar, None, None))
            elif _exists(fs, got, stem + ".npz"):  # DataComp: metadata parquet + .npz of the same stem
                found.append((_unstrip(fs, f), "datacomp", None, _unstrip(fs, stem + ".npz"), None))
            else:
                found.append((_unstrip(fs, f), _parquet_format(_unstrip(fs, f)), None, None, None))
    same.warn()
    ids = _shard_ids([f[0] for f in found])
    return [
        ShardSpec(sid, p, fmt, side, img, txt)
        for sid, (p, fmt, side, img, txt) in zip(ids, found, strict=True)
    ]


def check_out_outside_inputs(inputs: Iterable[str], out: str) -> None:
    """Refuse a run folder equal to or inside an input folder (or a glob's fixed leading folder):
    the next run over the same inputs would read this run's outputs as shards."""
    ofs, opath = _fs(out)
    target = _canonical(ofs, opath)
    for url in inputs:
        fs, path = _fs(url)
        if fs.protocol != ofs.protocol:
            continue
        if _is_glob(path):
            folder = _glob_root(path)
        elif fs.isdir(path):
            folder = path
        else:
            continue
        base = _canonical(fs, folder)
        if target == base or target.startswith(base.rstrip("/") + "/"):
            relation = "is" if target == base else "is inside"
            raise InputFileError(
                f"--out {out} {relation} the input folder {folder}: the run's outputs would be read as "
                "shards by the next run; write the run folder outside the inputs"
            )


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


def _shard_ids(paths: list[str]) -> list[str]:
    """File stems, prefixed with parent folders only where two stems collide."""
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


# --- columns --------------------------------------------------------------------------------------


def column_map(schema: pa.Schema, source: str = "shard") -> dict[str, str]:
    """canonical field -> the shard's actual column name, matched case-insensitively.

    A field's aliases are tried in order and the first that any column matches wins; two columns
    matching it (``text`` twice, or ``TEXT`` and ``text``) are ambiguous: ``DuplicateColumnError``.
    """
    by_lower: dict[str, list[str]] = {}
    for name in schema.names:
        by_lower.setdefault(name.lower(), []).append(name)
    out: dict[str, str] = {}
    for f in INPUT_FIELDS.values():
        for alias in f.aliases:
            names = by_lower.get(alias)
            if not names:
                continue
            if len(names) > 1:
                raise DuplicateColumnError(_duplicate_columns(source, names, f.name))
            out[f.name] = names[0]
            break
    return out


def _duplicate_columns(source: str, names: list[str], field_name: str) -> str:
    if len(set(names)) == 1:
        return (
            f"{source}: column {names[0]!r} appears {len(names)} times; it is read as the "
            f"{field_name} column, so which one to read is ambiguous"
        )
    listed = " and ".join(repr(n) for n in names)
    both = "both" if len(names) == 2 else "all"
    return (
        f"{source}: columns {listed} {both} match the {field_name} column (column names are matched "
        "case-insensitively); rename or drop one"
    )


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
    """Fail with one line naming the file and column if a required column is missing, mistyped or
    given twice."""
    cols = column_map(schema, url)
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


# --- embedding files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, int]
    fortran: bool
    dtype: np.dtype
    offset: int  # where the array's bytes start

    @property
    def end(self) -> int:
        """The file size numpy writes for this header."""
        return self.offset + math.prod(self.shape) * self.dtype.itemsize


def embedding_header(f: BinaryIO, source: str) -> NpyHeader:
    """The header of a 2-D numeric .npy array at the start of ``f`` (left positioned at the data)."""
    start = f.tell()
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, EOFError, OSError, SyntaxError) as e:
        raise InputFileError(f"{source}: not a readable .npy embedding file ({e})") from None
    if dtype.hasobject:
        raise InputFileError(f"{source}: not a readable .npy embedding file (object arrays)")
    if len(shape) != 2:
        raise InputFileError(f"{source}: embeddings must be 2-D (rows x dim), got shape {shape}")
    return NpyHeader(shape, fortran, dtype, f.tell() - start)


def _check_npy_size(source: str, size: int, header: NpyHeader) -> None:
    if size < header.end:
        raise InputFileError(
            f"{source}: .npy file is truncated ({size} bytes; its header's {header.shape} "
            f"{header.dtype} array needs {header.end})"
        )
    if size > header.end:
        raise InputFileError(
            f"{source}: {size - header.end} bytes after the array its header describes "
            f"(shape {header.shape}): the header does not match the data"
        )


def check_npy(url: str) -> None:
    fs, path = _fs(url)
    try:
        size = fs.size(path)
        with fs.open(path, "rb") as f:
            header = embedding_header(f, url)
    except FileNotFoundError:
        raise InputFileError(f"{url}: no such file") from None
    _check_npy_size(url, size, header)


def datacomp_prefixes(member_names: Iterable[str]) -> dict[str, str]:
    """Model prefix -> CLIP model for each complete <prefix>_img/<prefix>_txt pair of a .npz."""
    names = {n[: -len(".npy")] for n in member_names if n.endswith(".npy")}
    return {p: m for p, m in DATACOMP_MODELS.items() if f"{p}_img" in names and f"{p}_txt" in names}


def check_npz(url: str) -> None:
    """A zip whose directory lists a model's image and text arrays, each a 2-D array of the size its
    header says (the central directory and the member headers only; no array is read)."""
    fs, path = _fs(url)
    try:
        with fs.open(path, "rb") as f, zipfile.ZipFile(f) as npz:
            names = npz.namelist()
            present = datacomp_prefixes(names)
            if not present:
                raise InputFileError(f"{url}: no <model>_img/<model>_txt arrays (found {sorted(names)})")
            for prefix in present:
                for side in ("img", "txt"):
                    member = f"{prefix}_{side}.npy"
                    with npz.open(member) as m:
                        header = embedding_header(m, f"{url}:{member}")
                    _check_npy_size(f"{url}:{member}", npz.getinfo(member).file_size, header)
    except FileNotFoundError:
        raise InputFileError(f"{url}: no such file") from None
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError) as e:
        raise InputFileError(f"{url}: not a readable .npz file ({e})") from None


# --- tars -----------------------------------------------------------------------------------------


def check_tar(url: str) -> None:
    """The first member header parses; an uncompressed tar is a whole number of 512-byte blocks
    (a tar cut at any other byte is truncated). Damage further in fails the shard when it is read."""
    fs, path = _fs(url)
    try:
        size = fs.size(path)
        with fs.open(path, "rb") as f:
            head = f.read(TAR_BLOCK)
            if head.startswith(_COMPRESSED_MAGIC):
                f.seek(0)
                with tarfile.open(fileobj=f, mode="r|*") as tar:  # type: ignore[call-overload]
                    tar.next()
                return
    except FileNotFoundError:
        raise InputFileError(f"{url}: no such file") from None
    except (tarfile.TarError, zlib.error, EOFError, OSError) as e:
        raise InputFileError(f"{url}: not a readable tar file ({e})") from None
    if not head:
        raise InputFileError(f"{url}: not a readable tar file (empty file)")
    if size % TAR_BLOCK:
        raise InputFileError(
            f"{url}: not a readable tar file ({size} bytes is not a whole number of {TAR_BLOCK}-byte "
            "blocks: the tar is truncated or has bytes after its end)"
        )
    if head.strip(b"\0"):  # an all-zero first block is an empty archive
        try:
            tarfile.TarInfo.frombuf(head, tarfile.ENCODING, "surrogateescape")
        except tarfile.HeaderError as e:
            raise InputFileError(
                f"{url}: not a readable tar file (first member header is invalid: {e})"
            ) from None


def validate_shard(spec: ShardSpec) -> None:
    """Cheap checks of every input file of a shard; raise a one-line AuditError naming the file."""
    if spec.format == "webdataset":
        check_tar(spec.path)
        if spec.sidecar:
            check_columns(spec.sidecar, read_parquet_schema(spec.sidecar), "webdataset")
        return
    check_columns(spec.path, read_parquet_schema(spec.path), spec.format)
    if spec.format == "clip_retrieval":
        assert spec.image_embeddings and spec.text_embeddings
        check_npy(spec.image_embeddings)
        check_npy(spec.text_embeddings)
    elif spec.format == "datacomp":
        assert spec.image_embeddings
        check_npz(spec.image_embeddings)
