"""Every hostile caption or image gets a score or a quarantine reason; no scorer crashes."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from audit.jpeg_batch import DecodeCounts
from audit.model_cache import get_models
from audit.schemas import INGESTED_SCHEMA
from audit.shard_audit import score_shard_table, split_quarantine


def _png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims huge dimensions (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
        + chunk(b"IEND", b"")
    )


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


CASES: list[tuple[str, str | None, bytes | None, str | None]] = [
    # key, caption, image bytes, expected quarantine reason (None: scored)
    ("empty-caption", "", _jpeg(), None),
    ("huge-caption", "word " * 20_000, _jpeg(), None),
    ("emoji", "🔥💯🙈 #blessed", _jpeg(), None),
    ("rtl", "مرحبا بالعالم שלום עולם", _jpeg(), None),
    ("zero-width", "n\u200bu\u200dde\u2060 beach \ufeff", _jpeg(), None),
    ("control-chars", "tab\tnew\nline\x00nul", _jpeg(), None),
    ("zero-byte-image", "a photo", b"", "image_empty"),
    ("truncated-image", "a photo", _jpeg()[: len(_jpeg()) // 2], "image_truncated"),
    ("cut-inside-header", "a photo", _jpeg()[:300], "image_undecodable"),
    ("huge-dimensions", "a photo", _png_header_claiming(100_000, 100_000), "image_too_large"),
    ("not-an-image", "a photo", b"GIF89a-but-not-really" + b"\x00" * 20, "image_undecodable"),
    ("text-file-named-jpg", "a photo", b"hello, I am a text file", "image_undecodable"),
]


def _hostile_table() -> pa.Table:
    n = len(CASES)
    cols = {f.name: pa.nulls(n, f.type) for f in INGESTED_SCHEMA}
    cols.update(
        key=pa.array([c[0] for c in CASES]),
        shard_id=pa.array(["hostile"] * n),
        row_index=pa.array(range(n), pa.int64()),
        caption=pa.array([c[1] for c in CASES], pa.string()),
        image=pa.array([c[2] for c in CASES], pa.binary()),
    )
    return pa.table([cols[f.name] for f in INGESTED_SCHEMA], schema=INGESTED_SCHEMA)


def _reasons(quarantined: pa.Table) -> dict[str, str]:
    keys, reasons = quarantined.column("key").to_pylist(), quarantined.column("reason").to_pylist()
    return dict(zip(keys, reasons, strict=True))


@pytest.mark.slow
def test_hostile_rows_are_scored_or_quarantined_never_raised(make_config) -> None:
    table, n = _hostile_table(), len(CASES)
    cfg = make_config(**{"text.scorers": ["profanity_check", "hatesonar", "lexicon", "pii"]})
    counts = DecodeCounts()
    scored, quarantined = split_quarantine(score_shard_table(table, cfg, counts))
    assert scored.num_rows + quarantined.num_rows == n
    assert _reasons(quarantined) == {k: r for k, _, _, r in CASES if r is not None}
    if get_models(cfg).device == "cpu":
        assert counts.as_dict() == {"pil": sum(1 for c in CASES if c[2] is not None)}  # CPU keeps PIL
    for name in ("text_offensive_prob", "text_hate_prob", "image_nsfw_prob", "clip_similarity"):
        values = scored.column(name).to_pylist()
        assert all(v is not None and np.isfinite(v) for v in values), name
    terms = dict(
        zip(scored.column("key").to_pylist(), scored.column("lexicon_terms").to_pylist(), strict=True)
    )
    assert terms["zero-width"] == ["sexual:nude"]


@pytest.mark.slow
@pytest.mark.gpu
def test_hostile_images_get_the_same_reasons_when_decoded_on_the_gpu(make_config) -> None:
    expected = {k: r for k, _, _, r in CASES if r is not None}
    on, off = DecodeCounts(), DecodeCounts()
    cfg = make_config(device="cuda", **{"text.scorers": ["lexicon"]})
    scored, quarantined = split_quarantine(score_shard_table(_hostile_table(), cfg, on))
    assert _reasons(quarantined) == expected
    assert on.torchvision == scored.num_rows  # every good image here is a plain JPEG
    assert all(np.isfinite(v) for v in scored.column("clip_similarity").to_pylist())
    cfg = make_config(device="cuda", **{"text.scorers": ["lexicon"], "images.gpu_decode": False})
    _, quarantined = split_quarantine(score_shard_table(_hostile_table(), cfg, off))
    assert _reasons(quarantined) == expected and off.torchvision == 0
