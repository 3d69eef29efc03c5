"""Arrow schemas of the input formats mmaudit reads, version 1.

Input column names are matched case-insensitively; each canonical field lists the names it is
known by in the wild (LAION metadata, img2dataset, clip-retrieval).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

INPUT_SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class InputField:
    """One canonical input column: the names it goes by and the Arrow types accepted for it."""

    name: str
    aliases: tuple[str, ...]
    kinds: tuple[str, ...]  # "string", "binary", "integer", "floating"


STRING = ("string",)
TEXT = ("string", "binary")  # binary captions are decoded per row; bad UTF-8 is quarantined
NUMBER = ("integer", "floating")

# Canonical name -> aliases, in order of preference.
INPUT_FIELDS: dict[str, InputField] = {
    f.name: f
    for f in (
        InputField("key", ("key",), ("string", "integer")),
        InputField("sample_id", ("sample_id", "uid"), ("string", "integer")),
        InputField("url", ("url",), STRING),
        InputField("caption", ("caption", "text"), TEXT),
        InputField("image", ("jpg", "image", "png", "webp"), ("binary",)),
        InputField("width", ("original_width", "width"), NUMBER),
        InputField("height", ("original_height", "height"), NUMBER),
        InputField("source_similarity", ("similarity",), ("floating",)),
        InputField("source_punsafe", ("punsafe",), NUMBER),
        InputField("source_pwatermark", ("pwatermark",), NUMBER),
        InputField("source_nsfw", ("nsfw",), STRING),
        InputField("license", ("license",), STRING),
        InputField("source_hash", ("hash",), ("string", "integer")),
        InputField("sha256", ("sha256",), STRING),
        InputField("fetch_status", ("status",), STRING),
        InputField("fetch_error", ("error_message",), STRING),
    )
}

# Which canonical fields each format must carry. Everything else is optional.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "laion_metadata": ("url", "caption"),
    "img2dataset_parquet": ("key", "url", "caption"),
    "webdataset": (),  # captions come from KEY.txt; the sidecar parquet is optional
    "clip_retrieval": ("caption",),
    "datacomp": ("caption",),  # DataComp metadata parquet (uid, url, text, ...) beside its .npz
}

# Reference schemas of the formats as they are written by their tools (used by the sample
# builder and the tests; readers accept any column order and case).
LAION_METADATA_SCHEMA = pa.schema(
    [
        ("SAMPLE_ID", pa.int64()),
        ("URL", pa.string()),
        ("TEXT", pa.string()),
        ("HEIGHT", pa.int32()),
        ("WIDTH", pa.int32()),
        ("LICENSE", pa.string()),
        ("NSFW", pa.string()),
        ("similarity", pa.float64()),
        ("punsafe", pa.float32()),
        ("pwatermark", pa.float32()),
        ("hash", pa.int64()),
    ],
    metadata={"mmaudit.schema": "input.laion_metadata", "mmaudit.version": INPUT_SCHEMA_VERSION},
)

IMG2DATASET_PARQUET_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("url", pa.string()),
        ("caption", pa.string()),
        ("status", pa.string()),
        ("error_message", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("original_width", pa.int64()),
        ("original_height", pa.int64()),
        ("exif", pa.string()),
        ("sha256", pa.string()),
        ("jpg", pa.binary()),
    ],
    metadata={"mmaudit.schema": "input.img2dataset_parquet", "mmaudit.version": INPUT_SCHEMA_VERSION},
)

# webdataset: KEY.jpg / KEY.txt / KEY.json members in a .tar, plus this sidecar (no jpg).
WEBDATASET_SIDECAR_SCHEMA = IMG2DATASET_PARQUET_SCHEMA.remove(
    IMG2DATASET_PARQUET_SCHEMA.get_field_index("jpg")
).with_metadata({"mmaudit.schema": "input.webdataset_sidecar", "mmaudit.version": INPUT_SCHEMA_VERSION})

# clip-retrieval: img_emb/img_emb_N.npy and text_emb/text_emb_N.npy (float16/float32, rows aligned
# with metadata/metadata_N.parquet, which carries at least a caption column).
CLIP_RETRIEVAL_LAYOUT = {
    "image_embeddings": "img_emb/img_emb_{n}.npy",
    "text_embeddings": "text_emb/text_emb_{n}.npy",
    "metadata": "metadata/metadata_{n}.parquet",
}
