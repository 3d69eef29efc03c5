"""Reviewer safety: lexicon terms masked until revealed (plain-text marks, the run's own lexicon), and
the reveal count with its break reminder."""

from __future__ import annotations

import pytest

from audit.errors import ConfigError
from audit.lexicon import Lexicon
from audit.report_mask import Masker
from audit.review.safety import (
    BREAK_ENV,
    CLOSE,
    DEFAULT_BREAK_AFTER,
    OPEN,
    RevealLog,
    break_after,
    marked_caption,
    masked_terms,
    term_spans,
)


@pytest.fixture(scope="module")
def masker() -> Masker:
    return Masker(Lexicon())  # the packaged lexicon, as the sample run uses


@pytest.mark.parametrize(
    ("caption", "masked", "revealed"),
    [
        ("a nude beach", f"a {OPEN}n***{CLOSE} beach", f"a {OPEN}nude{CLOSE} beach"),
        ("NuD3 photo", f"{OPEN}N***{CLOSE} photo", f"{OPEN}NuD3{CLOSE} photo"),  # case and leetspeak
        (
            "white trash and a redneck",
            f"{OPEN}w**** *****{CLOSE} and a {OPEN}r******{CLOSE}",
            f"{OPEN}white trash{CLOSE} and a {OPEN}redneck{CLOSE}",
        ),
        ("denuded hills", "denuded hills", "denuded hills"),  # inside a longer word: no match
        ("a cup of coffee", "a cup of coffee", "a cup of coffee"),
        ("", "", ""),
    ],
)
def test_terms_are_marked_and_masked_until_revealed(
    masker: Masker, caption: str, masked: str, revealed: str
) -> None:
    assert marked_caption(masker, caption) == masked
    assert marked_caption(masker, caption, reveal=True) == revealed
    assert marked_caption(masker, None) == "(none)"


def test_masked_terms_list_each_match_in_order(masker: Masker) -> None:
    text = "nude redneck"
    assert masked_terms(masker, text) == ["n***", "r******"]
    assert masked_terms(masker, text, reveal=True) == ["nude", "redneck"]
    assert term_spans(masker, text) == [(0, 4), (5, 12)]
    assert masked_terms(masker, None) == []


def test_marking_hostile_markup_keeps_it_as_plain_text(masker: Masker) -> None:
    text = "![nude](http://127.0.0.1:9/x.png) <img src=x> nude"
    out = marked_caption(masker, text)
    assert out.endswith(f"<img src=x> {OPEN}n***{CLOSE}")
    assert out.startswith("![") and "(http://127.0.0.1:9/x.png)" in out  # nothing escaped or removed


def test_break_reminder_limit_from_the_argument_the_environment_or_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(BREAK_ENV, raising=False)
    assert break_after() == DEFAULT_BREAK_AFTER
    monkeypatch.setenv(BREAK_ENV, "7")
    assert break_after() == 7
    assert break_after("3") == 3  # the app's --break-after wins
    for value, source in (("many", f"${BREAK_ENV}"), ("0", f"${BREAK_ENV}")):
        monkeypatch.setenv(BREAK_ENV, value)
        with pytest.raises(ConfigError, match=f"^\\{source}: ") as err:
            break_after()
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^--break-after: "):
        break_after("-1")


def test_reveals_count_each_image_once_and_remind_past_the_limit() -> None:
    log = RevealLog(limit=2)
    assert log.reveal("a:1") and not log.reveal("a:1")  # the same image again is not a new reveal
    assert (log.count, log.break_due) == (1, False)
    assert log.reveal("a:2")
    assert (log.count, log.since_break, log.break_due) == (2, 2, True)
    log.took_break()
    assert (log.count, log.break_due) == (2, False)
    log.reveal("a:3")
    log.reveal("a:4")
    assert log.break_due and log.count == 4
