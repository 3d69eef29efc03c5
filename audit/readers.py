"""Read one shard of any supported format into the canonical ingested table.

Row problems (null or non-UTF-8 caption, missing image, embedding rows that do not line up) are
recorded in ``quarantine_reason``; nothing is dropped here.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audit.errors import InputFileError
from audit.schemas import INGESTED_SCHEMA
from audit.shards import ShardSpec, check_columns
from audit.tables import set_columns

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class ShardData:
    table: pa.Table  # INGESTED_SCHEMA
    sha256: str
    notes: list[str]
    embedding_model: str | None = None  # the CLIP model precomputed embeddings came from, if known


def _read_bytes(url: str) -> bytes:
    try:
        with fsspec.open(url, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise InputFileError(f"{url}: no such file") from None


def _parquet(url: str, data: bytes) -> pa.Table:
    try:
        return pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as e:
        raise InputFileError(f"{url}: not a readable parquet file ({str(e).splitlines()[0]})") from None


def _decode_captions(col: pa.ChunkedArray | None, n: int) -> tuple[list[str | None], list[str | None]]:
    """Captions as str, plus a per-row quarantine reason (null caption, bytes that are not UTF-8)."""
    if col is None:
        return [None] * n, ["caption_missing"] * n
    values = col.to_pylist()
    captions: list[str | None] = []
    reasons: list[str | None] = []
    for v in values:
        if v is None:
            captions.append(None)
            reasons.append("caption_missing")
        elif isinstance(v, bytes):
            try:
                captions.append(v.decode("utf-8"))
                reasons.append(None)
            except UnicodeDecodeError:
                captions.append(v.decode("utf-8", "replace"))
                reasons.append("caption_not_utf8")
        else:
            captions.append(v)
            reasons.append(None)
    return captions, reasons


def _as(table: pa.Table, cols: dict[str, str], name: str, typ: pa.DataType) -> pa.Array:
    if name not in cols:
        return pa.nulls(table.num_rows, typ)
    col = table.column(cols[name])
    if name in ("key", "source_hash") or pa.types.is_string(typ):
        col = col.cast(pa.string()) if not pa.types.is_binary(col.type) else col
    return pc.cast(col, typ, safe=False).combine_chunks() if col.type != typ else col.combine_chunks()


def normalize(table: pa.Table, cols: dict[str, str], spec: ShardSpec, *, carries_images: bool) -> pa.Table:
    """Map a shard's own columns onto INGESTED_SCHEMA and mark rows that cannot be scored."""
    n = table.num_rows
    row_index = np.arange(n, dtype=np.int64)
    if "key" in cols:
        keys = _as(table, cols, "key", pa.string()).to_pylist()
    elif "sample_id" in cols:
        keys = _as(table, cols, "sample_id", pa.string()).to_pylist()
    else:
        keys = [None] * n
    keys = [k if k not in (None, "") else f"{spec.shard_id}:{i}" for i, k in enumerate(keys)]

    captions, reasons = _decode_captions(table.column(cols["caption"]) if "caption" in cols else None, n)
    details: list[str | None] = [None] * n
    status = _as(table, cols, "fetch_status", pa.string()).to_pylist()
    image = _as(table, cols, "image", pa.binary()) if "image" in cols else pa.nulls(n, pa.binary())
    if carries_images:
        lengths = pc.binary_length(image).to_pylist()
        for i, length in enumerate(lengths):
            if reasons[i] is not None:
                continue
            fetched = status[i] in (None, "success")
            if length is None and fetched:
                reasons[i] = "image_missing"
            elif length == 0:
                reasons[i] = "image_empty"

    seen: set[str] = set()
    for i, k in enumerate(keys):
        if k in seen and reasons[i] is None:
            reasons[i], details[i] = "duplicate_key", f"key {k!r} appears earlier in this shard"
        seen.add(k)

    arrays = {
        "key": pa.array(keys, pa.string()),
        "shard_id": pa.array([spec.shard_id] * n, pa.string()),
        "row_index": pa.array(row_index),
        "caption": pa.array(captions, pa.string()),
        "image": image,
        "quarantine_reason": pa.array(reasons, pa.string()),
        "quarantine_detail": pa.array(details, pa.string()),
    }
    for field in INGESTED_SCHEMA:
        if field.name not in arrays:
            arrays[field.name] = (
                _as(table, cols, field.name, field.type) if field.name in cols else pa.nulls(n, field.type)
            )
    return pa.table([arrays[f.name] for f in INGESTED_SCHEMA], schema=INGESTED_SCHEMA)


def read_parquet_shard(spec: ShardSpec) -> ShardData:
    data = _read_bytes(spec.path)
    table = _parquet(spec.path, data)
    cols = check_columns(spec.path, table.schema, spec.format)
    carries_images = "image" in cols
    return ShardData(normalize(table, cols, spec, carries_images=carries_images), _sha256(data), [])


def _tar_members(url: str, data: bytes) -> dict[str, dict[str, bytes]]:
    """KEY -> {suffix: bytes} for KEY.jpg / KEY.txt / KEY.json members."""
    samples: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = posixpath.basename(member.name)
                stem, dot, suffix = name.partition(".")
                if not dot:
                    continue
                fh = tar.extractfile(member)
                samples.setdefault(stem, {})["." + suffix.lower()] = fh.read() if fh else b""
    except (tarfile.TarError, EOFError) as e:
        raise InputFileError(f"{url}: not a readable tar file ({e})") from None
    return samples


def read_webdataset_shard(spec: ShardSpec) -> ShardData:
    data = _read_bytes(spec.path)
    samples = _tar_members(spec.path, data)
    if spec.sidecar:
        side = _parquet(spec.sidecar, _read_bytes(spec.sidecar))
        cols = check_columns(spec.sidecar, side.schema, "webdataset")
        side_keys = side.column(cols["key"]).cast(pa.string()).to_pylist() if "key" in cols else []
    else:
        side, cols, side_keys = None, {}, []
    # Rows: the sidecar's order (it lists failed downloads too), then tar-only keys in tar order.
    keys = list(side_keys) + [k for k in samples if k not in set(side_keys)]
    side_index = {k: i for i, k in enumerate(side_keys)}
    captions: list[bytes | None] = []
    images: list[bytes | None] = []
    url_col: list[str | None] = []
    for k in keys:
        member = samples.get(k, {})
        txt = member.get(".txt")
        meta = json.loads(member[".json"]) if ".json" in member else {}
        if txt is None and k in side_index and "caption" in cols:
            cap = side.column(cols["caption"])[side_index[k]].as_py()
            txt = cap.encode("utf-8") if isinstance(cap, str) else cap
        captions.append(txt)
        images.append(next((member[s] for s in IMAGE_SUFFIXES if s in member), None))
        url_col.append(meta.get("url"))
    columns: dict[str, pa.Array] = {
        "key": pa.array(keys, pa.string()),
        "caption": pa.array(captions, pa.binary()),
        "jpg": pa.array(images, pa.binary()),
    }
    if side is not None:
        take = pa.array([side_index.get(k) for k in keys], pa.int64())
        for canonical, actual in cols.items():
            if canonical not in ("key", "caption", "image"):
                columns[actual] = side.column(actual).take(take)
    if "url" not in cols:
        columns["url"] = pa.array(url_col, pa.string())
    table = pa.table(columns)
    cols = check_columns(spec.path, table.schema, "webdataset")
    return ShardData(normalize(table, cols, spec, carries_images=True), _sha256(data), [])


def _load_npy(url: str) -> np.ndarray:
    try:
        emb = np.load(io.BytesIO(_read_bytes(url)), allow_pickle=False)
    except ValueError as e:
        raise InputFileError(f"{url}: not a readable .npy embedding file ({e})") from None
    return _check_2d(url, emb)


def _check_2d(source: str, emb: np.ndarray) -> np.ndarray:
    if emb.ndim != 2:
        raise InputFileError(f"{source}: embeddings must be 2-D (rows x dim), got shape {emb.shape}")
    return emb.astype(np.float32, copy=False)


def attach_embeddings(
    base: pa.Table, arrays: dict[str, tuple[np.ndarray, str]]
) -> tuple[pa.Table, list[str]]:
    """Put precomputed image/text embeddings on their metadata rows.

    Rows without an embedding row (the files disagree in length) and rows holding NaN, inf or an
    all-zero vector are quarantined; the rest are kept as given and L2-normalised by the CLIP stage.
    """
    notes: list[str] = []
    n = base.num_rows
    reasons = base.column("quarantine_reason").to_pylist()
    details = base.column("quarantine_detail").to_pylist()
    columns: dict[str, pa.Array] = {}
    for name, (emb, source) in arrays.items():
        if emb.shape[0] != n:
            notes.append(f"{source}: {emb.shape[0]} embedding rows for {n} metadata rows")
        finite = np.isfinite(emb).all(axis=1)
        nonzero = np.abs(emb).sum(axis=1) > 0
        for i in range(n):
            if reasons[i] is not None:
                continue
            if i >= emb.shape[0]:
                reasons[i], details[i] = (
                    "embedding_missing",
                    f"{posixpath.basename(source)} has {emb.shape[0]} rows",
                )
            elif not finite[i]:
                reasons[i], details[i] = "embedding_invalid", f"{name} holds NaN or inf"
            elif not nonzero[i]:
                reasons[i], details[i] = "embedding_invalid", f"{name} is all zeros"
        kept = emb[:n]
        values = pa.array(kept.reshape(-1), pa.float32())
        offsets = pa.array(np.arange(0, kept.size + 1, kept.shape[1], dtype=np.int32))
        col = pa.ListArray.from_arrays(offsets, values)
        if kept.shape[0] < n:
            col = pa.concat_arrays([col, pa.nulls(n - kept.shape[0], pa.list_(pa.float32()))])
        columns[name] = col
    columns["quarantine_reason"] = pa.array(reasons, pa.string())
    columns["quarantine_detail"] = pa.array(details, pa.string())
    return set_columns(base, columns), notes


def read_clip_retrieval_shard(spec: ShardSpec) -> ShardData:
    data = _read_bytes(spec.path)
    table = _parquet(spec.path, data)
    cols = check_columns(spec.path, table.schema, "clip_retrieval")
    base = normalize(table, cols, spec, carries_images=False)
    arrays = {
        "image_embedding": (_load_npy(spec.image_embeddings), spec.image_embeddings),
        "text_embedding": (_load_npy(spec.text_embeddings), spec.text_embeddings),
    }
    out, notes = attach_embeddings(base, arrays)
    return ShardData(out, _sha256(data), notes, embedding_model=_declared_model(spec))


def _declared_model(spec: ShardSpec) -> str | None:
    """clip-retrieval folders do not record their model; mmaudit's own exports and users may add
    an ``embeddings.json`` ({"model": "ViT-B-32", ...}) at the folder root."""
    root = posixpath.dirname(posixpath.dirname(spec.path))
    try:
        with fsspec.open(posixpath.join(root, "embeddings.json"), "rb") as f:
            return json.loads(f.read()).get("model")
    except FileNotFoundError:
        return None


# DataComp's .npz keys: <prefix>_img / <prefix>_txt, one prefix per CLIP model
DATACOMP_MODELS = {"b32": "ViT-B-32", "l14": "ViT-L-14"}


def read_datacomp_shard(spec: ShardSpec, clip_model: str | None = None) -> ShardData:
    data = _read_bytes(spec.path)
    table = _parquet(spec.path, data)
    cols = check_columns(spec.path, table.schema, "datacomp")
    base = normalize(table, cols, spec, carries_images="image" in cols)
    try:
        npz = np.load(io.BytesIO(_read_bytes(spec.image_embeddings)), allow_pickle=False)
    except ValueError as e:
        raise InputFileError(f"{spec.image_embeddings}: not a readable .npz file ({e})") from None
    present = {
        p: m for p, m in DATACOMP_MODELS.items() if f"{p}_img" in npz.files and f"{p}_txt" in npz.files
    }
    if not present:
        raise InputFileError(
            f"{spec.image_embeddings}: no <model>_img/<model>_txt arrays (found {npz.files})"
        )
    wanted = next((p for p, m in present.items() if m == clip_model), None)
    prefix = wanted or next(iter(present))
    arrays = {
        "image_embedding": (_check_2d(spec.image_embeddings, npz[f"{prefix}_img"]), spec.image_embeddings),
        "text_embedding": (_check_2d(spec.image_embeddings, npz[f"{prefix}_txt"]), spec.image_embeddings),
    }
    out, notes = attach_embeddings(base, arrays)
    return ShardData(out, _sha256(data), notes, embedding_model=present[prefix])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


READERS = {
    "laion_metadata": read_parquet_shard,
    "img2dataset_parquet": read_parquet_shard,
    "webdataset": read_webdataset_shard,
    "clip_retrieval": read_clip_retrieval_shard,
}


def read_shard(spec: ShardSpec, clip_model: str | None = None) -> ShardData:
    """``clip_model`` picks among the models a DataComp .npz carries."""
    if spec.format == "datacomp":
        return read_datacomp_shard(spec, clip_model)
    return READERS[spec.format](spec)
