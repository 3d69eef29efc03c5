"""Read one shard of any supported format into the canonical ingested table, batch by batch.

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

import contextlib
import hashlib
import json
import posixpath
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audit.errors import InputFileError
from audit.row_identity import row_ids_for
from audit.schemas import INGESTED_SCHEMA
from audit.shards import (
    ShardFormat,
    ShardSpec,
    check_columns,
    datacomp_prefixes,
    embedding_header,
)
from audit.tables import set_columns

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# Rows per batch handed to the stages. A batch's image bytes and decoded pixels are what a worker
# holds at once (about batch_rows x (image bytes + decoded pixels)); a shard never is.
DEFAULT_BATCH_ROWS = 1024
# Parquet column chunks are read through a buffer of this size, page by page, instead of whole.
# (A single page is still read whole: pyarrow writes a page per 1024 values by default.)
PARQUET_BUFFER_BYTES = 1 << 20
_HASH_CHUNK = 1 << 20


@dataclass
class ShardData:
    table: pa.Table  # INGESTED_SCHEMA
    sha256: str
    notes: list[str]
    embedding_model: str | None = None  # the CLIP model precomputed embeddings came from, if known


# --- streaming helpers ----------------------------------------------------------------------------


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
        while chunk := self._f.read(_HASH_CHUNK):
            self._update(chunk)
        self._f.seek(self._pos)
        return self._h.hexdigest()


class SeenKeys:
    """Keys already seen in a shard, as 8 bytes per key (sorted runs of 64-bit BLAKE2b hashes, merged
    like a log-structured merge tree), so duplicate detection costs no per-row Python objects.
    Two distinct keys share a hash with probability ~n²/2⁶⁵ (3e-8 for a million-row shard)."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []
        self.repeated = 0  # rows whose key appeared earlier in the shard

    @staticmethod
    def hashes(keys: list[str]) -> np.ndarray:
        return np.fromiter(
            (int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little") for k in keys),
            dtype=np.uint64,
            count=len(keys),
        )

    def add(self, keys: list[str]) -> np.ndarray:
        """Record ``keys``; True where a key was seen before (earlier in this batch or shard)."""
        h = self.hashes(keys)
        seen = np.ones(len(h), dtype=bool)
        uniq, first = np.unique(h, return_index=True)
        seen[first] = False
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, h), len(run) - 1)
            seen |= run[at] == h
        self.repeated += int(seen.sum())
        if uniq.size:
            self._runs.append(uniq)
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            b, a = self._runs.pop(), self._runs.pop()
            self._runs.append(np.union1d(a, b))
        return seen

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self._runs)

    def sorted_unique(self) -> np.ndarray:
        """Every distinct key hash of the shard, sorted (for counting keys repeated across shards)."""
        out = np.zeros(0, dtype=np.uint64)
        for run in self._runs:
            out = np.union1d(out, run)
        return out


@contextlib.contextmanager
def _open(url: str) -> Iterator[BinaryIO]:
    try:
        f = fsspec.open(url, "rb").open()
    except FileNotFoundError:
        raise InputFileError(f"{url}: no such file") from None
    with f:
        yield f


def _read_bytes(url: str) -> bytes:
    """A whole file: only for files without image bytes (webdataset sidecars, embeddings.json)."""
    with _open(url) as f:
        return f.read()


def _parquet_error(url: str, e: Exception, at_row: int | None = None) -> InputFileError:
    first = (str(e).splitlines() or [""])[0]
    why = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in first)  # bytes of the file
    where = f" (its data at or after row {at_row} is corrupt)" if at_row is not None else ""
    return InputFileError(f"{url}: not a readable parquet file{where} ({why})")


def _parquet(url: str, data: bytes) -> pa.Table:
    try:
        return pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as e:
        raise _parquet_error(url, e) from None


# --- row mapping ----------------------------------------------------------------------------------


def _decode_captions(col: pa.ChunkedArray | None, n: int) -> tuple[list[str | None], list[str | None]]:
    """Captions as str, plus a per-row caption problem (null, empty, bytes that are not UTF-8).

    A caption problem does not quarantine the row: a row with a usable image is audited image-only.
    """
    if col is None:
        return [None] * n, ["caption_missing"] * n
    values = col.to_pylist()
    captions: list[str | None] = []
    problems: list[str | None] = []
    for v in values:
        if v is None:
            captions.append(None)
            problems.append("caption_missing")
        elif isinstance(v, bytes):
            try:
                captions.append(v.decode("utf-8"))
                problems.append(None if v.strip() else "caption_empty")
            except UnicodeDecodeError:
                captions.append(v.decode("utf-8", "replace"))
                problems.append("caption_not_utf8")
        else:
            captions.append(v)
            problems.append(None if v.strip() else "caption_empty")
    return captions, problems


def _as(table: pa.Table, cols: dict[str, str], name: str, typ: pa.DataType) -> pa.Array:
    if name not in cols:
        return pa.nulls(table.num_rows, typ)
    col = table.column(cols[name])
    if name in ("key", "source_hash") or pa.types.is_string(typ):
        col = col.cast(pa.string()) if not pa.types.is_binary(col.type) else col
    return _array(pc.cast(col, typ, safe=False) if col.type != typ else col)


def _array(col: pa.ChunkedArray) -> pa.Array:
    """One array without copying where it already is one (combine_chunks copies even then)."""
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def normalize(
    table: pa.Table,
    cols: dict[str, str],
    spec: ShardSpec,
    *,
    carries_images: bool,
    start: int = 0,
    seen: SeenKeys | None = None,
) -> pa.Table:
    """Map a shard's own columns onto INGESTED_SCHEMA and mark rows that cannot be scored.

    ``table`` holds the shard's rows ``start .. start + num_rows``; ``seen`` carries the keys of
    earlier batches of the same shard (a fresh one treats ``table`` as the whole shard).
    """
    n = table.num_rows
    row_index = np.arange(start, start + n, dtype=np.int64)
    # the dataset's own id first: img2dataset's `key` is renumbered per fetch output folder, while
    # LAION's SAMPLE_ID / DataComp's uid stay unique corpus-wide (decisions and removal lists key on it)
    if "sample_id" in cols:
        keys = _as(table, cols, "sample_id", pa.string()).to_pylist()
    elif "key" in cols:
        keys = _as(table, cols, "key", pa.string()).to_pylist()
    else:
        keys = [None] * n
    keys = [k if k not in (None, "") else f"{spec.shard_id}:{start + i}" for i, k in enumerate(keys)]

    captions, caption_problems = _decode_captions(
        table.column(cols["caption"]) if "caption" in cols else None, n
    )
    image_problems: list[str | None] = [None] * n
    status = _as(table, cols, "fetch_status", pa.string()).to_pylist()
    image = _as(table, cols, "image", pa.binary()) if "image" in cols else pa.nulls(n, pa.binary())
    if carries_images:
        lengths = pc.binary_length(image).to_pylist()
        for i, length in enumerate(lengths):
            fetched = status[i] in (None, "success")
            if length is None and fetched:
                image_problems[i] = "image_missing"
            elif length == 0:
                image_problems[i] = "image_empty"
    # repeated keys are counted, never used to pick or drop a row: rows are named by row_id
    (seen or SeenKeys()).add(keys)

    arrays = {
        "row_id": row_ids_for(spec.shard_id, start, n),
        "key": pa.array(keys, pa.string()),
        "shard_id": pa.array([spec.shard_id] * n, pa.string()),
        "row_index": pa.array(row_index),
        "caption": pa.array(captions, pa.string()),
        "caption_problem": pa.array(caption_problems, pa.string()),
        "image_problem": pa.array(image_problems, pa.string()),
        "image": image,
        "quarantine_reason": pa.nulls(n, pa.string()),
        "quarantine_detail": pa.nulls(n, pa.string()),
    }
    for f in INGESTED_SCHEMA:
        if f.name not in arrays:
            arrays[f.name] = _as(table, cols, f.name, f.type) if f.name in cols else pa.nulls(n, f.type)
    return pa.table([arrays[f.name] for f in INGESTED_SCHEMA], schema=INGESTED_SCHEMA)


# --- the reader -----------------------------------------------------------------------------------


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
        for table in _BATCHES[self.spec.format](self):
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


# --- parquet (LAION metadata, img2dataset, and the metadata of embedding formats) ------------------


def _parquet_batches(r: ShardReader, fmt: ShardFormat) -> Iterator[tuple[pa.Table, dict[str, str]]]:
    """Raw row batches of ``r.spec.path`` with its column map; sets ``r.sha256`` at the end."""
    url = r.spec.path
    with _open(url) as raw:
        f = HashingFile(raw)
        try:
            pf = pq.ParquetFile(f, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as e:
            raise _parquet_error(url, e) from None
        cols = check_columns(url, pf.schema_arrow, fmt)
        it = pf.iter_batches(batch_size=r.batch_rows, use_threads=False)
        while True:
            try:
                batch = next(it, None)
            except (pa.ArrowInvalid, OSError) as e:  # the footer was fine: a data page is not
                raise _parquet_error(url, e, at_row=r.rows) from None
            if batch is None:
                break
            yield pa.Table.from_batches([batch]), cols
            del batch
        r.sha256 = f.hexdigest()


def _parquet_shard(r: ShardReader) -> Iterator[pa.Table]:
    for table, cols in _parquet_batches(r, r.spec.format):
        yield r._normalize(table, cols, carries_images="image" in cols)
        del table


# --- webdataset -----------------------------------------------------------------------------------


@dataclass
class _Sample:
    key: str
    members: dict[str, bytes]  # ".jpg" -> bytes, ...
    side_row: int | None  # the sidecar row of this key, if any
    not_regular: list[str] = field(default_factory=list)  # "b.jpg is a symbolic link to 'a.jpg'"


# quarantine_detail of a sample with non-regular members is cut to this many characters
_DETAIL_CHARS = 500


def _webdataset_shard(r: ShardReader) -> Iterator[pa.Table]:
    """Samples in tar order (consecutive members of one key form a sample, as webdataset defines),
    then the sidecar rows that had no member in the tar (failed downloads), in sidecar order.
    A sample with a symlink, hard link or other non-regular member is quarantined as
    ``member_not_regular`` (its content is not in the tar, and such members are a hostile tar's
    tools)."""
    spec = r.spec
    if spec.sidecar:
        side = _parquet(spec.sidecar, _read_bytes(spec.sidecar))  # no image bytes: small
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
    with _open(url) as raw:
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
    while chunk := raw.read(_HASH_CHUNK):
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


# --- precomputed embeddings (clip-retrieval .npy, DataComp .npz) --------------------------------


class NpyRows:
    """Row slices of a 2-D .npy array read from a seekable file (local, remote or a .npz member)
    without loading the array: ``rows[a:b]`` seeks and reads those rows only.

    ``np.load(mmap_mode="r")`` would do the same for local .npy files only; this covers remote
    files (fsspec range reads) and DataComp's .npz members too, with one code path."""

    def __init__(self, f: BinaryIO, source: str) -> None:
        self.source = source
        self._f = f
        header = embedding_header(f, source)  # a 2-D numeric array, or a one-line InputFileError
        shape, fortran, dtype = header.shape, header.fortran, header.dtype
        self.shape: tuple[int, int] = shape
        self.dtype: np.dtype = dtype
        self._whole = None
        self._offset = f.tell()
        if fortran:  # column-major: rows are not contiguous, so it is read whole (rare)
            f.seek(0)
            self._whole = np.lib.format.read_array(f, allow_pickle=False)
        self._row_bytes = dtype.itemsize * shape[1]

    @property
    def ndim(self) -> int:
        return 2

    def __getitem__(self, sl: slice) -> np.ndarray:
        a, b, _ = sl.indices(self.shape[0])
        b = max(a, b)
        if self._whole is not None:
            return self._whole[a:b]
        self._f.seek(self._offset + a * self._row_bytes)
        want = (b - a) * self._row_bytes
        data = self._f.read(want)
        if len(data) != want:
            raise InputFileError(f"{self.source}: .npy file ends early (truncated)")
        return np.frombuffer(data, dtype=self.dtype).reshape(b - a, self.shape[1])


def attach_embeddings(
    base: pa.Table, arrays: dict[str, tuple[np.ndarray | NpyRows, str]], start: int = 0
) -> pa.Table:
    """Put precomputed image/text embeddings on their metadata rows.

    ``base`` holds metadata rows ``start .. start + n``; each array gives the whole file's rows
    (an ndarray or an ``NpyRows``) and only those ``n`` rows are read. Rows without an embedding
    row (the files disagree in length) and rows holding NaN, inf or an all-zero vector are
    quarantined; the rest are kept as given and L2-normalised by the CLIP stage.
    """
    n = base.num_rows
    reasons = base.column("quarantine_reason").to_pylist()
    details = base.column("quarantine_detail").to_pylist()
    columns: dict[str, pa.Array] = {}
    for name, (emb, source) in arrays.items():
        kept = np.asarray(emb[start : start + n], dtype=np.float32)
        finite = np.isfinite(kept).all(axis=1)
        nonzero = np.abs(kept).sum(axis=1) > 0
        for i in range(n):
            if reasons[i] is not None:
                continue
            if i >= kept.shape[0]:
                reasons[i], details[i] = (
                    "embedding_missing",
                    f"{posixpath.basename(source)} has {emb.shape[0]} rows",
                )
            elif not finite[i]:
                reasons[i], details[i] = "embedding_invalid", f"{name} holds NaN or inf"
            elif not nonzero[i]:
                reasons[i], details[i] = "embedding_invalid", f"{name} is all zeros"
        values = pa.array(kept.reshape(-1), pa.float32())
        offsets = pa.array(np.arange(0, kept.size + 1, kept.shape[1], dtype=np.int32))
        col = pa.ListArray.from_arrays(offsets, values)
        if kept.shape[0] < n:
            col = pa.concat_arrays([col, pa.nulls(n - kept.shape[0], pa.list_(pa.float32()))])
        columns[name] = col
    columns["quarantine_reason"] = pa.array(reasons, pa.string())
    columns["quarantine_detail"] = pa.array(details, pa.string())
    return set_columns(base, columns)


def _embedding_batches(
    r: ShardReader, arrays: dict[str, tuple[NpyRows, str]], *, images: bool
) -> Iterator[pa.Table]:
    """Metadata batches with their embedding rows; ``images``: the format may carry image bytes."""
    for table, cols in _parquet_batches(r, r.spec.format):
        start = r.rows
        base = r._normalize(table, cols, carries_images=images and "image" in cols)
        del table
        yield attach_embeddings(base, arrays, start)  # batches() adds its rows to r.rows
        del base
    metadata_rows = r.rows
    r.notes.extend(
        f"{source}: {emb.shape[0]} embedding rows for {metadata_rows} metadata rows"
        for emb, source in arrays.values()
        if emb.shape[0] != metadata_rows
    )


@contextlib.contextmanager
def _npy(url: str) -> Iterator[NpyRows]:
    with _open(url) as f:
        yield NpyRows(f, url)


def _clip_retrieval_shard(r: ShardReader) -> Iterator[pa.Table]:
    spec = r.spec
    assert spec.image_embeddings and spec.text_embeddings
    r.embedding_model = _declared_model(spec)
    with _npy(spec.image_embeddings) as img, _npy(spec.text_embeddings) as txt:
        arrays = {
            "image_embedding": (img, spec.image_embeddings),
            "text_embedding": (txt, spec.text_embeddings),
        }
        yield from _embedding_batches(r, arrays, images=False)


def _declared_model(spec: ShardSpec) -> str | None:
    """clip-retrieval folders do not record their model; mmaudit's own exports and users may add
    an ``embeddings.json`` ({"model": "ViT-B-32", ...}) at the folder root."""
    root = posixpath.dirname(posixpath.dirname(spec.path))
    try:
        with fsspec.open(posixpath.join(root, "embeddings.json"), "rb") as f:
            return json.loads(f.read()).get("model")
    except FileNotFoundError:
        return None


def _datacomp_shard(r: ShardReader) -> Iterator[pa.Table]:
    spec = r.spec
    url = spec.image_embeddings
    assert url
    with _open(url) as f:
        try:
            npz = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError) as e:
            raise InputFileError(f"{url}: not a readable .npz file ({e})") from None
        with npz:
            present = datacomp_prefixes(npz.namelist())
            if not present:
                raise InputFileError(
                    f"{url}: no <model>_img/<model>_txt arrays (found {sorted(npz.namelist())})"
                )
            prefix = next((p for p, m in present.items() if m == r.clip_model), next(iter(present)))
            r.embedding_model = present[prefix]
            # each member is read a slice at a time; zipfile seeks within stored members and
            # decompresses forward through np.savez_compressed ones (batches come in row order)
            with npz.open(f"{prefix}_img.npy") as img_f, npz.open(f"{prefix}_txt.npy") as txt_f:
                arrays = {
                    "image_embedding": (NpyRows(img_f, f"{url}:{prefix}_img"), url),
                    "text_embedding": (NpyRows(txt_f, f"{url}:{prefix}_txt"), url),
                }
                yield from _embedding_batches(r, arrays, images=True)


_BATCHES: dict[str, Callable[[ShardReader], Iterator[pa.Table]]] = {
    "laion_metadata": _parquet_shard,
    "img2dataset_parquet": _parquet_shard,
    "webdataset": _webdataset_shard,
    "clip_retrieval": _clip_retrieval_shard,
    "datacomp": _datacomp_shard,
}
