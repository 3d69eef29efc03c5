"""Text inside images with the real PP-OCRv6 models shipped in the rapidocr wheel: what is read from
the sample's planted images, the second text side (ocr_* columns) scored and scoped by language,
and the not-applicable rule for scripts OCR cannot read."""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pytest
from PIL import Image, ImageDraw, ImageFont

from audit.languages import LanguageDetector
from audit.lexicon import LexiconScorer
from audit.ocr import MODEL_FILES, OcrReader, model_dir
from audit.sample import IMAGE_TEXTS, build_rows
from audit.stages.ocr_text import read_image_text, score_image_text
from audit.text_scorers import HateSonarScorer, ProfanityCheckScorer


@pytest.fixture(scope="module")
def reader() -> OcrReader:
    return OcrReader(threads=1)


@pytest.fixture(scope="module")
def planted() -> dict[str, Image.Image]:
    rows = {r.key: r for r in build_rows()}
    keys = [k for k, *_ in IMAGE_TEXTS] + ["photo-chelsea", "gen-blue-circle"]
    return {k: Image.open(io.BytesIO(rows[k].image)).convert("RGB") for k in keys}


def test_reads_the_text_rendered_into_the_planted_images(reader: OcrReader, planted: dict) -> None:
    found = reader.read([planted[k] for k, *_ in IMAGE_TEXTS])
    assert [f.text for f in found] == [text for _, text, *_ in IMAGE_TEXTS]
    assert all(f.lines == 1 and f.confidence is not None and f.confidence > 0.8 for f in found)


def test_a_photo_without_text_and_a_lone_shape_read_as_no_text(reader: OcrReader, planted: dict) -> None:
    cat, circle = reader.read([planted["photo-chelsea"], planted["gen-blue-circle"]])
    assert (cat.text, cat.lines, cat.confidence) == ("", 0, None)
    assert circle.text == ""  # a circle read as the glyph "●" is not text


def test_a_huge_image_is_read_from_a_bounded_copy(reader: OcrReader) -> None:
    im = Image.new("RGB", (6000, 400), "white")
    ImageDraw.Draw(im).text((50, 100), "STOP HERE", font=ImageFont.load_default(size=200), fill="black")
    (found,) = reader.read([im])
    assert found.text.replace(" ", "") == "STOPHERE"


def test_model_records_name_each_bundled_file_with_its_checksum(reader: OcrReader) -> None:
    assert set(reader.records) == {"ocr:det", "ocr:rec", "ocr:cls"}
    for part, record in reader.records.items():
        path = model_dir() / MODEL_FILES[part.split(":")[1]]
        assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and record.version == "3.10.0"
    assert reader.record.sha256 == reader.records["ocr:rec"].sha256


def _table(n: int, caption_language: list[str | None]) -> pa.Table:
    return pa.table(
        {
            "quarantine_reason": pa.nulls(n, pa.string()),
            "caption_language": pa.array(caption_language, pa.string()),
        }
    )


def test_image_text_is_a_second_text_side_scoped_by_its_own_language(
    reader: OcrReader, planted: dict
) -> None:
    keys = [k for k, *_ in IMAGE_TEXTS] + ["photo-chelsea"]
    table = _table(len(keys), ["en", "de", "en", "en"])
    table = read_image_text(table, reader=reader, images={i: planted[k] for i, k in enumerate(keys)})
    scorers = [ProfanityCheckScorer(), HateSonarScorer(), LexiconScorer()]
    out = score_image_text(table, scorers=scorers, detector=LanguageDetector()).to_pydict()
    en, de, benign, cat = range(4)
    assert out["ocr_language"][:3] == ["en", "de", "en"] and out["ocr_language"][cat] is None
    # the English meme: every scorer ran on its text
    assert out["ocr_lexicon_slur_hits"][en] == 1 and out["ocr_text_hate_prob"][en] >= 0.6
    assert out["ocr_text_offensive_prob"][en] >= 0.5 and out["not_applicable"][en] == []
    # the German one: the lexicon ran, the English-only models are null and named, not 0
    assert out["ocr_lexicon_slur_hits"][de] == 1 and out["ocr_text_hate_prob"][de] is None
    assert out["not_applicable"][de] == ["ocr:profanity_check", "ocr:hatesonar"]
    assert out["ocr_lexicon_slur_hits"][benign] == 0 and out["ocr_text_offensive_prob"][benign] < 0.5
    # no text read: no image-text score at all (null), the row is not "clean text"
    assert out["ocr_text"][cat] == "" and out["ocr_text_hate_prob"][cat] is None


def test_no_text_found_where_ocr_cannot_read_the_script_is_not_applicable(reader: OcrReader) -> None:
    im = Image.new("RGB", (200, 120), (90, 140, 200))
    table = _table(3, ["ru", "de", None])
    out = read_image_text(table, reader=reader, images={0: im, 1: im, 2: im}).to_pydict()
    # Russian caption: OCR reads no Cyrillic, so an empty result proves nothing
    assert out["ocr_text"] == [None, "", ""] and out["not_applicable"] == [["ocr"], [], []]
