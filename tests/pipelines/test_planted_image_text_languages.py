"""The sample audit (what `make audit` runs, shared session run) on issue 16's planted cases:
hateful memes with clean captions, offensive captions in five languages, a PDQ-listed image; the
not-applicable record, per-language summary figures, the report's Languages section and the
manifest's model records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.sample import IMAGE_TEXTS, NON_ENGLISH_CAPTIONS, planted_cases
from audit.schemas import Manifest, Summary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scores(sample_run: Path) -> dict[str, dict]:
    t = pa.concat_tables(pq.read_table(p) for p in sorted((sample_run / "scores").glob("*.parquet")))
    return {r["key"]: r for r in t.to_pylist()}


@pytest.fixture(scope="module")
def flags(sample_run: Path) -> dict[str, dict]:
    return {r["key"]: r for r in pq.read_table(sample_run / "flags.parquet").to_pylist()}


def test_hateful_memes_are_flagged_for_their_image_text_while_the_caption_is_clean(
    scores: dict, flags: dict
) -> None:
    texts = {key: text for key, text, *_ in IMAGE_TEXTS}
    for key in planted_cases()["hateful_meme"]:
        row, flag = scores[key], flags[key]
        assert row["ocr_text"] == texts[key] and row["lexicon_slur_hits"] == 0
        assert row["ocr_lexicon_slur_hits"] >= 1
        assert "hateful-meme" in flag["reasons"] and flag["severity"] == "high", flag["reasons"]
        assert flag["ocr_text"] == texts[key]
    english = scores["meme-hateful-en"]
    assert english["text_offensive_prob"] < 0.5 and english["ocr_text_hate_prob"] >= 0.6
    assert set(flags["meme-hateful-en"]["rules"]) >= {
        "hateful-meme",
        "hateful-meme-model",
        "slur-in-image-text",
    }
    german = scores["meme-hateful-de"]
    assert german["ocr_language"] == "de" and german["ocr_text_hate_prob"] is None
    assert {"ocr:hatesonar", "ocr:profanity_check"} <= set(german["not_applicable"])


def test_benign_image_text_is_read_and_not_flagged(scores: dict, flags: dict) -> None:
    for key in planted_cases()["image_text_benign"]:
        assert scores[key]["ocr_text"] == "HAPPY BIRTHDAY ANNA" and scores[key]["ocr_language"] == "en"
        assert key not in flags, flags.get(key)


def test_offensive_captions_in_five_languages_are_flagged_by_their_lexicons(
    scores: dict, flags: dict
) -> None:
    expected = {key: lang for key, _, lang, _ in NON_ENGLISH_CAPTIONS}
    for key in planted_cases()["offensive_non_english"]:
        row = scores[key]
        assert row["caption_language"] == expected[key] and row["lexicon_slur_hits"] >= 1
        assert flags[key]["reasons"] == ["slur"], flags[key]["reasons"]
        # the English-only models did not call it clean: null, and named
        assert row["text_offensive_prob"] is None and row["text_hate_prob"] is None
        # ViT-B-32's text tower is English-only: no similarity to an image for these captions
        assert row["clip_similarity"] is None
        assert set(row["not_applicable"]) == {"profanity_check", "hatesonar", "clip"} | (
            {"ocr"} if key == "offensive-ru" else set()
        )


def test_benign_non_english_captions_are_not_flagged_and_not_called_clean(scores: dict, flags: dict) -> None:
    for key in planted_cases()["matching_non_english"]:
        row = scores[key]
        assert key not in flags, flags.get(key)
        assert row["lexicon_slur_hits"] == 0 and row["text_offensive_prob"] is None
        assert "hatesonar" in row["not_applicable"]
    # Russian: OCR cannot read Cyrillic, so an image where it read nothing has no image-text verdict
    assert scores["benign-ru"]["ocr_text"] is None and "ocr" in scores["benign-ru"]["not_applicable"]
    assert scores["benign-de"]["ocr_text"] == ""


def test_english_rows_have_every_score_and_nothing_not_applicable(scores: dict) -> None:
    for key in planted_cases()["offensive"] + planted_cases()["hateful"]:
        row = scores[key]
        assert row["not_applicable"] == [] and row["text_offensive_prob"] is not None
        assert row["clip_similarity"] is not None


def test_the_pdq_listed_image_is_a_critical_never_rendered_known_bad_match(scores: dict, flags: dict) -> None:
    row, flag = scores["known-bad-pdq"], flags["known-bad-pdq"]
    assert row["known_bad_list"] == "known_bad.csv:pdq:sample-pdq" and row["known_bad_distance"] <= 31
    assert row["image_pdq_quality"] >= 50 and len(row["image_pdq"]) == 64
    assert flag["reasons"] == ["known-bad-hash"] and flag["severity"] == "critical" and flag["render_blocked"]
    assert flag["image_pdq"] == row["image_pdq"]


def test_nudenet_scored_every_decoded_image_and_no_benign_photo_is_flagged(scores: dict, flags: dict) -> None:
    decoded = [r for r in scores.values() if r["image_status"] == "decoded"]
    assert decoded and all(r["nudenet_exposed_max"] is not None for r in decoded)
    assert all(r["nudenet_exposed_max"] is None for r in scores.values() if r["image_status"] == "absent")
    assert scores["photo-astronaut"]["nudenet_class_max"] and not any(
        "exposed-nudity" in flags[k]["reasons"] for k in flags
    )


def test_summary_breaks_rows_flags_and_not_applicable_down_by_language(
    sample_run: Path, scores: dict
) -> None:
    summary = Summary.model_validate_json((sample_run / "summary.json").read_text())
    langs = summary.languages
    assert sum(c.rows for c in langs.values()) == summary.rows_scored
    for _, _, lang, case in NON_ENGLISH_CAPTIONS:
        assert langs[lang].rows >= 1 and langs[lang].not_applicable["hatesonar"] == langs[lang].rows
        if case == "offensive_non_english":
            assert langs[lang].rows_flagged >= 1 and langs[lang].flags_by_reason["slur"] >= 1
    assert "hatesonar" not in langs["en"].not_applicable
    assert langs["none"].rows == sum(1 for r in scores.values() if r["caption_language"] is None)
    assert langs["ru"].not_applicable["ocr"] == 2
    text = summary.image_text_languages
    assert text["de"].rows_flagged == 1 and text["de"].not_applicable == {
        "ocr:hatesonar": 1,
        "ocr:profanity_check": 1,
    }
    assert text["en"].flags_by_reason["hateful-meme"] == 1


def test_manifest_records_every_new_model_with_its_file_checksum(sample_run: Path) -> None:
    manifest = Manifest.model_validate_json((sample_run / "manifest.json").read_text())
    for name in ("nudenet", "ocr", "ocr:det", "ocr:rec", "ocr:cls", "language"):
        record = manifest.models[name]
        assert record.version and len(record.sha256 or "") == 64, name
    assert manifest.versions["nudenet"] == "3.4.2" and manifest.versions["pdqhash"] == "0.2.8"


def test_report_shows_languages_and_the_image_text_masked(sample_run: Path, tmp_path: Path) -> None:
    from audit.report import write_report

    run_dir = Path(shutil.copytree(sample_run, tmp_path / "run"))
    write_report(str(run_dir))
    html = (run_dir / "report" / "report.html").read_text()
    section = html[html.index('id="sec-languages"') : html.index('id="sec-scores"')]
    for lang in ("de", "fr", "es", "ru", "ja", "en"):
        assert f"<code>{lang}</code>" in section
    assert "hatesonar: " in section and "ocr:hatesonar: 1" in section
    # the meme's text is shown with its lexicon terms masked, like captions
    assert "DEATH TO EVERY F*****" in html and "T** *** K******" in html and "faggot" not in html.lower()
    exported = [json.loads(line) for line in (run_dir / "report" / "flags.jsonl").read_text().splitlines()]
    assert {"DEATH TO EVERY FAGGOT", "TOD DEN KANAKEN"} <= {r.get("ocr_text") for r in exported}
