"""Export a run's embeddings as a clip-retrieval folder, so the corpus can be audited again from
precomputed embeddings without running a CLIP model on any row.

    OUT/img_emb/img_emb_N.npy, OUT/text_emb/text_emb_N.npy   float16, aligned row for row with
    OUT/metadata/metadata_N.parquet                        key, source_row_id, url, caption, sha256, ...
    OUT/embeddings.json                                    {"model": ..., "source_run": ...}

Rows are the scored rows that have both embeddings; values are the stored block-int8 codes
dequantized (the error bound of audit.kernels applies). Embedding rows are matched to their scores
row by ``row_id`` (the embedding files' ``key`` column holds it); the metadata's ``key`` is the
dataset's own key, so the copy keeps the corpus' labels (repeats included); the audit of the copy gives
its rows new row ids (``metadata_N:<row>``) and ``source_row_id`` says which source row each one is.
"""

from __future__ import annotations

import io
import json
import posixpath

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audit.embedding_store import read_shard_embeddings
from audit.errors import InputFileError
from audit.runfolder import RunFolder
from audit.schemas import Manifest

METADATA_COLUMNS = {  # scores column -> clip-retrieval metadata column (LAION names where they exist)
    "key": "key",  # the dataset's own key, kept as the copy's label
    "row_id": "source_row_id",  # the row of the source run each copy row came from
    "url": "url",
    "caption": "caption",
    "sha256": "sha256",
    "source_similarity": "similarity",
    "source_punsafe": "punsafe",
    "source_nsfw": "NSFW",
}


def export_embeddings(run_url: str, out_url: str) -> int:
    run = RunFolder(run_url)
    if not run.exists(run.manifest):
        raise InputFileError(f"{run_url}: no manifest.json (not a run folder)")
    manifest = Manifest.model_validate(run.read_json(run.manifest))
    fs, root = fsspec.core.url_to_fs(out_url)
    for sub in ("img_emb", "text_emb", "metadata"):
        fs.makedirs(posixpath.join(root, sub), exist_ok=True)
    total = 0
    n = 0
    for record in manifest.shards:
        if record.status != "done":
            continue
        image = read_shard_embeddings(run, record.shard_id, "image")
        text = read_shard_embeddings(run, record.shard_id, "text")
        if not image or not text:
            continue
        text_pos = {r: i for i, r in enumerate(text[0])}  # both files are keyed by row id
        both = [(i, text_pos[r]) for i, r in enumerate(image[0]) if r in text_pos]
        if not both:
            continue
        img_rows, txt_rows = (np.asarray(x, np.int64) for x in zip(*both, strict=True))
        row_ids = pa.array([image[0][i] for i in img_rows], pa.string())
        scores = run.read_parquet(run.scores(record.shard_id))
        at = pc.index_in(row_ids, value_set=scores.column("row_id").combine_chunks())
        if at.null_count:  # embeddings of another audit than these scores
            raise InputFileError(
                f"{run.scores(record.shard_id)}: no row for some embedding rows of the shard"
            )
        meta = scores.take(at)
        meta = pa.table({new: meta.column(old) for old, new in METADATA_COLUMNS.items()})
        _write(fs, posixpath.join(root, "img_emb", f"img_emb_{n}.npy"), image[1][img_rows].astype(np.float16))
        _write(
            fs, posixpath.join(root, "text_emb", f"text_emb_{n}.npy"), text[1][txt_rows].astype(np.float16)
        )
        with fs.open(posixpath.join(root, "metadata", f"metadata_{n}.parquet"), "wb") as f:
            pq.write_table(meta, f)
        total += len(row_ids)
        n += 1
    model = manifest.models.get("clip")
    doc = {"model": model.name if model else None, "weights": model.weights if model else None,
           "source_run": run_url, "rows": total}  # fmt: skip
    with fs.open(posixpath.join(root, "embeddings.json"), "w") as f:
        f.write(json.dumps(doc, indent=2))
    return total


def _write(fs: fsspec.AbstractFileSystem, path: str, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    with fs.open(path, "wb") as f:
        f.write(buf.getvalue())
