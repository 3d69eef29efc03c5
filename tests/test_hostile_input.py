"""Every hostile caption or image gets a score or a quarantine reason; no scorer crashes."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from audit.jpeg_batch import DecodeCounts
from audit.model_cache import get_models
from audit.readers import normalize
from audit.shard_audit import score_shard_table, split_quarantine
from audit.shards import ShardSpec, column_map
from tests.hostile.hostile_inputs import png_header_claiming


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


CASES: list[tuple[str, str | None, bytes | None, str | None]] = [
    # key, caption, image bytes, expected quarantine reason (None: scored). A row is quarantined
    # only when neither side is usable: a bad image with a caption is audited text-only.
    ("empty-caption", "", _jpeg(), None),
    ("null-caption", None, _jpeg(), None),
    ("truncated-image-captioned", "a photo", _jpeg()[: len(_jpeg()) // 2], None),
    ("not-an-image-captioned", "a photo", b"<html>404</html>", None),
    ("huge-caption", "word " * 20_000, _jpeg(), None),
    ("emoji", "🔥💯🙈 #blessed", _jpeg(), None),
    ("rtl", "مرحبا بالعالم שלום עולם", _jpeg(), None),
    ("zero-width", "n\u200bu\u200dde\u2060 beach \ufeff", _jpeg(), None),
    ("control-chars", "tab\tnew\nline\x00nul", _jpeg(), None),
    ("zero-byte-image", None, b"", "image_empty"),
    ("truncated-image", None, _jpeg()[: len(_jpeg()) // 2], "image_truncated"),
    ("cut-inside-header", "", _jpeg()[:300], "image_undecodable"),
    ("huge-dimensions", None, png_header_claiming(100_000, 100_000), "image_too_large"),
    ("not-an-image", None, b"GIF89a-but-not-really" + b"\x00" * 20, "image_undecodable"),
    ("text-file-named-jpg", " ", b"hello, I am a text file", "image_undecodable"),
    ("nothing-at-all", None, None, "image_missing"),
]


def _hostile_table() -> pa.Table:
    """The cases as an img2dataset shard would hold them, mapped by the real reader's normalize."""
    raw = pa.table(
        {
            "key": [c[0] for c in CASES],
            "url": ["http://127.0.0.1/x"] * len(CASES),
            "caption": pa.array([c[1] for c in CASES], pa.string()),
            "jpg": pa.array([c[2] for c in CASES], pa.binary()),
        }
    )
    spec = ShardSpec("hostile", "hostile.parquet", "img2dataset_parquet")
    return normalize(raw, column_map(raw.schema), spec, carries_images=True)


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
        assert counts.as_dict() == {
            "pil": sum(1 for c in CASES if c[2])
        }  # CPU keeps PIL; empty bytes are not decoded
    captioned = scored.column("caption_problem").is_null().to_pylist()
    imaged = [s == "decoded" for s in scored.column("image_status").to_pylist()]
    assert not all(captioned) and not all(imaged)  # both one-sided kinds are in the table
    # hatesonar and CLIP are English-only: a non-English caption gets null and the scorer's name in
    # not_applicable
    na = [set(v or ()) for v in scored.column("not_applicable").to_pylist()]

    def applies(scorer: str, sides: list[bool]) -> list[bool]:
        return [s and scorer not in n for s, n in zip(sides, na, strict=True)]

    both = [a and b for a, b in zip(captioned, imaged, strict=True)]
    assert any(applies("hatesonar", captioned)) and applies("hatesonar", captioned) != captioned
    for name, has_side in (
        ("text_offensive_prob", applies("hatesonar", captioned)),
        ("text_hate_prob", applies("hatesonar", captioned)),
        ("image_nsfw_prob", imaged),
        ("clip_similarity", applies("clip", both)),
    ):
        for v, has in zip(scored.column(name).to_pylist(), has_side, strict=True):
            # the side's score where the side is usable, null (never a clean-looking value) elsewhere
            assert (v is not None and np.isfinite(v)) if has else v is None, name
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
