"""DataComp shards: metadata parquet with a .npz of <model>_img / <model>_txt arrays beside it."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

import pyarrow as pa

from audit.errors import InputFileError
from audit.readers.base import ShardReader
from audit.readers.embeddings import NpyRows, embedding_batches
from audit.readers.files import open_input
from audit.shards import datacomp_prefixes


def datacomp_shard(r: ShardReader) -> Iterator[pa.Table]:
    spec = r.spec
    url = spec.image_embeddings
    assert url
    with open_input(url) as f:
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
                yield from embedding_batches(r, arrays, images=True)
