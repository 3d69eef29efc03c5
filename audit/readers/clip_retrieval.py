"""clip-retrieval folders: metadata/metadata_N.parquet with img_emb/ and text_emb/ .npy files."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator

import fsspec
import pyarrow as pa

from audit.readers.base import ShardReader
from audit.readers.embeddings import embedding_batches, open_npy
from audit.shards import ShardSpec


def clip_retrieval_shard(r: ShardReader) -> Iterator[pa.Table]:
    spec = r.spec
    assert spec.image_embeddings and spec.text_embeddings
    r.embedding_model = declared_model(spec)
    with open_npy(spec.image_embeddings) as img, open_npy(spec.text_embeddings) as txt:
        arrays = {
            "image_embedding": (img, spec.image_embeddings),
            "text_embedding": (txt, spec.text_embeddings),
        }
        yield from embedding_batches(r, arrays, images=False)


def declared_model(spec: ShardSpec) -> str | None:
    """clip-retrieval folders do not record their model; mmaudit's own exports and users may add
    an ``embeddings.json`` ({"model": "ViT-B-32", ...}) at the folder root."""
    root = posixpath.dirname(posixpath.dirname(spec.path))
    try:
        with fsspec.open(posixpath.join(root, "embeddings.json"), "rb") as f:
            return json.loads(f.read()).get("model")
    except FileNotFoundError:
        return None
