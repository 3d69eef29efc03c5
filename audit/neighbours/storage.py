"""The run folder's `index/`: the faiss index file and a small JSON that says what it is.

The JSON is written after the index, each by temp file + rename, and carries the row count: a folder left
half-written by a crash fails to load with one clear line instead of loading a mismatched index.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from typing import Any

import faiss
import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

from audit.errors import InputFileError

INDEX_FILE = "index.faiss"
META_FILE = "index.json"
FORMAT = "mmaudit.neighbour-index"
FORMAT_VERSION = 1


def write_index_folder(folder: str, index: faiss.Index, meta: dict[str, Any]) -> None:
    fs, root = fsspec.core.url_to_fs(folder)
    fs.makedirs(root, exist_ok=True)
    final = posixpath.join(root, INDEX_FILE)
    tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        if isinstance(fs, LocalFileSystem):
            faiss.write_index(index, tmp)  # streams to disk: no second copy of a large index in memory
        else:
            fs.pipe_file(tmp, faiss.serialize_index(index).tobytes())
        fs.mv(tmp, final)
        fs.pipe_file(tmp, json.dumps(meta, indent=2, sort_keys=True).encode())
        fs.mv(tmp, posixpath.join(root, META_FILE))
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)


def read_index_folder(folder: str, *, mmap: bool = False) -> tuple[dict[str, Any], faiss.Index]:
    """The JSON and the index; mmap leaves IVF lists on disk (for the dashboard)."""
    fs, root = fsspec.core.url_to_fs(folder)
    meta_path, index_path = posixpath.join(root, META_FILE), posixpath.join(root, INDEX_FILE)
    if not fs.exists(meta_path) or not fs.exists(index_path):
        raise InputFileError(f"{folder}: not a neighbour index folder (needs {META_FILE} and {INDEX_FILE})")
    meta = json.loads(fs.cat_file(meta_path))
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise InputFileError(
            f"{meta_path}: format {meta.get('format')!r} v{meta.get('format_version')} is not "
            f"{FORMAT} v{FORMAT_VERSION}"
        )
    if isinstance(fs, LocalFileSystem):
        index = faiss.read_index(index_path, faiss.IO_FLAG_MMAP if mmap else 0)
    else:
        index = faiss.deserialize_index(np.frombuffer(fs.cat_file(index_path), dtype=np.uint8))
    if index.d != meta["dim"] or index.ntotal != meta["n"]:
        raise InputFileError(
            f"{index_path}: holds {index.ntotal} rows of dim {index.d} but {META_FILE} says "
            f"{meta['n']} of dim {meta['dim']} (a partial write?): rebuild the index"
        )
    return meta, index
