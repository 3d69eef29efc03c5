from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from audit.errors import ConfigError
from audit.lexicon import LEET, ZERO_WIDTH, Lexicon, LexiconScorer, normalize


@pytest.fixture(scope="module")
def scorer() -> LexiconScorer:
    return LexiconScorer()


def _terms(scorer: LexiconScorer, text: str) -> list[str]:
    return scorer.score([text])["lexicon_terms"][0]


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("NUDE beach", "sexual:nude"),  # case
        ("nüde beach", "sexual:nude"),  # diacritics
        ("n\u200bu\u200dde beach", "sexual:nude"),  # zero-width characters
        ("p0rn site", "sexual:porn"),  # leetspeak
        ("what a f4gg0t", "slur:faggot (sexuality:gay)"),  # leetspeak + group label
        ("a gory scene", "violence:gory"),
        ("dead body on the road", "violence:dead body"),  # multi-word term
    ],
)
def test_normalisation_finds_disguised_terms(scorer: LexiconScorer, text: str, term: str) -> None:
    assert term in _terms(scorer, text)


@pytest.mark.parametrize(
    "text",
    [
        "Scunthorpe United",
        "assassination attempt",
        "cocktail party",
        "a spicy dish",
        "pornographic? no: pornography",
    ],
)
def test_terms_inside_longer_words_do_not_match(scorer: LexiconScorer, text: str) -> None:
    terms = _terms(scorer, text)
    # "pornography" is itself a listed term; only whole words may match
    assert all(t.split(":", 1)[1] in text.lower() for t in terms)
    assert not any(t in ("sexual:porn", "slur:spic", "slur:coon") for t in terms)


def test_batch_matches_stay_with_their_caption(scorer: LexiconScorer) -> None:
    out = scorer.score(["clean caption", "gore", "", "nude\nredneck", "tits"])
    assert out["lexicon_violence_hits"].tolist() == [0, 1, 0, 0, 0]
    assert out["lexicon_sexual_hits"].tolist() == [0, 0, 0, 1, 1]
    assert out["lexicon_slur_hits"].tolist() == [0, 0, 0, 1, 0]


def test_normalize_is_idempotent() -> None:
    for text in ("Ça Va N\u00dcDE 1337", "plain ascii"):
        assert normalize(normalize(text)) == normalize(text)


def test_custom_lexicon_folder_and_missing_file(tmp_path: Path) -> None:
    for name in ("slur", "sexual"):
        (tmp_path / f"{name}.txt").write_text("# version: 7\nwidget\n")
    with pytest.raises(ConfigError, match=r"violence\.txt"):
        Lexicon(tmp_path)
    (tmp_path / "violence.txt").write_text("gizmo\n")
    lex = Lexicon(tmp_path)
    assert [m.term for m in lex.match(["a widget and a gizmo"])[0]] == ["widget", "widget", "gizmo"]
    assert lex.sizes == {"slur": 1, "sexual": 1, "violence": 1}


def test_sample_benign_captions_are_not_flagged_by_the_lexicon(scorer: LexiconScorer) -> None:
    from audit.sample import build_rows

    benign = [
        r.caption for r in build_rows() if r.case in ("matching", "generated", "mismatched") and r.caption
    ]
    out = scorer.score(benign)
    hits = [c for c, t in zip(benign, out["lexicon_terms"], strict=True) if t]
    assert hits == []


def _whole_text_normalize(text: str) -> str:
    """The definition: NFKD of the whole caption, marks and zero-width characters dropped."""
    text = text.translate(str.maketrans("", "", ZERO_WIDTH))
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text.casefold().lower().translate(LEET)


@pytest.mark.parametrize(
    "text",
    [
        "Ça Va N\u00dcDE 1337",
        "e\u0301\u0316\u0301\u0316x",  # marks of mixed classes, which NFKD reorders
        "\u0f73\u0f75\u0f81 tibetan vowel signs that decompose to marks only",
        "\ufb01ne \u2460 \u216b \uff2e\uff35\uff24\uff25",  # ligature, circled, roman, full width
        "\uac00\ud7a3 \u1100\u1161\u11a8 hangul",
        "n\u200bu\u200dd\u2060e\ufeff \u00ad",
        "\u0344\u0340\u0343 marks that decompose to marks",
        "ǅ ß ẞ İ ﬀ ς",  # case folding that changes length
    ],
)
def test_normalize_is_nfkd_of_the_whole_text_without_marks(text: str) -> None:
    assert normalize(text) == _whole_text_normalize(text)


def test_normalize_agrees_with_whole_text_nfkd_for_every_code_point() -> None:
    chars = [chr(c) for c in range(0x80, 0x30000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(chars), 4096):  # each code point between letters, a block at a time
        text = "a".join(chars[start : start + 4096])
        assert normalize(text) == _whole_text_normalize(text), hex(ord(chars[start]))
