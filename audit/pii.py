"""Personal data in captions: e-mail addresses, phone numbers, street addresses, ID-like numbers."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.schemas import ModelRecord

# Every pattern runs in time linear in the caption (tests/test_linear_time.py): a quantifier that
# can meet its own characters again has a fixed bound or is possessive (``++``, ``*+``), and a
# match may only start where a retry one character later cannot redo the same scan.
_EMAIL_DOMAIN = r"@[\w-]++(?:\.[\w-]++)*\.[a-z]{2,}\b"
PATTERNS: dict[str, re.Pattern[str]] = {
    # The local part starts only where a run of its characters starts (after any leading ".+-"), so
    # a run without an "@" is scanned once, not once per position ("a.a.a.….a.1" was quadratic).
    # Labels cannot contain "." and are possessive; the label list gives back one label at a time
    # to find the top-level domain, which is one more pass over the domain.
    "email": re.compile(r"(?<![\w.+-])[.+-]*+\b[\w.+-]++" + _EMAIL_DOMAIN, re.IGNORECASE),
    "phone": re.compile(
        r"(?<![\w-])(?<!\d )(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)|\d{2,4})"
        r"[\s.-]\d{3,4}[\s.-]\d{3,4}(?![\w-])(?! \d)"
    ),
    "street_address": re.compile(
        r"\b\d{1,5}\s++(?:[A-Z][a-z]++\s++){1,3}"
        r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl)\b\.?"
    ),
    "national_id": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),  # US SSN shape
    "card_number": re.compile(r"\b(?:\d[ -]?){13,19}\b"),
}
# An address can start where the previous one ends, inside the same run ("a@b.com.c@d.org"); the
# run-start rule above would miss it, so it is tried right there.
_EMAIL_RIGHT_AFTER = re.compile(r"[\w.+-]++" + _EMAIL_DOMAIN, re.IGNORECASE)
_NON_DIGIT = re.compile(r"\D")
# Every pattern needs an "@" or a decimal digit (``\d``): a caption with neither is skipped after
# one C-speed scan (most alt-text), not a Python loop over its characters.
_MAY_HOLD_PII = re.compile(r"[@\d]")
# What each pattern cannot match without: (an "@", a "-", this many decimal digits)
_NEEDS: dict[str, tuple[bool, bool, int]] = {
    "email": (True, False, 0),
    "phone": (False, False, 8),  # \d{2,4} then \d{3,4} twice
    "street_address": (False, False, 1),
    "national_id": (False, True, 9),
    "card_number": (False, False, 13),
}
_ALL_KINDS = tuple(PATTERNS)
# the kinds for each (has "@", has "-", >= 8, >= 9, >= 13, >= 1 digits): 64 keys at most
_KINDS_BY_KEY: dict[tuple[bool, ...], tuple[str, ...]] = {}
_DELETE_DIGITS = str.maketrans("", "", "0123456789")


def _matches(kind: str, text: str) -> Iterator[re.Match[str]]:
    pattern, pos = PATTERNS[kind], 0
    while m := pattern.search(text, pos):
        yield m
        pos = m.end()  # no pattern matches the empty string
        if kind == "email":
            while m := _EMAIL_RIGHT_AFTER.match(text, pos):
                yield m
                pos = m.end()


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _kinds_possible(text: str) -> tuple[str, ...]:
    r"""The patterns that can match ``text`` at all, from its "@"s, dashes and count of digits:
    profiled, most captions with a digit hold a year or a size, and running all five patterns on
    them cost ~10 us a caption. Only ASCII digits are counted, so non-ASCII text (``\d`` also
    matches other scripts' digits) runs every pattern."""
    if not text.isascii():
        return _ALL_KINDS
    digits = len(text) - len(text.translate(_DELETE_DIGITS))
    key = ("@" in text, "-" in text, digits >= 8, digits >= 9, digits >= 13, digits >= 1)
    kinds = _KINDS_BY_KEY.get(key)
    if kinds is None:
        kinds = tuple(kind for kind, (at, dash, least) in _NEEDS.items() if
                      (not at or key[0]) and (not dash or key[1]) and digits >= least)  # fmt: skip
        _KINDS_BY_KEY[key] = kinds
    return kinds


def find_pii(text: str) -> list[str]:
    """The kinds of personal data in one caption, one entry per occurrence."""
    if not _MAY_HOLD_PII.search(text):
        return []
    found: list[str] = []
    for kind in _kinds_possible(text):
        for m in _matches(kind, text):
            if kind == "card_number":
                digits = _NON_DIGIT.sub("", m.group())
                if not (13 <= len(digits) <= 19 and _luhn_ok(digits)):
                    continue
            found.append(kind)
    return found


class PiiScorer:
    name = "pii"
    columns = ("pii_count", "pii_types")
    languages = None  # e-mail, phone and card patterns are not language-bound (street addresses: English)

    def __init__(self) -> None:
        self.record = ModelRecord(
            name="mmaudit-pii-patterns", source="audit.pii", weights="package", version="1"
        )

    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray | list]:
        count = np.zeros(len(texts), np.int32)
        # one shared empty list for the rows without PII (nothing mutates it): not one per row
        types: list[list[str]] = [[]] * len(texts)
        for i in _may_hold_pii(texts).tolist():
            if found := find_pii(texts[i]):
                count[i], types[i] = len(found), sorted(set(found))
        return {"pii_count": count, "pii_types": types}


# What every pattern's match contains, for ASCII text, in RE2 (linear time by construction, run
# by Arrow over the whole batch): an "@"; a digit or ")" then a separator and three digits (phone);
# a digit, spaces and a capitalised word (street address); the ID shape; 13 digits with single
# separators (card). ``\s`` is spelled out: Python's also matches \v and \x1c-\x1f, RE2's does not.
_WS = r"[\t\n\x0b\x0c\r\x1c-\x1f ]"
_PREFILTER = "|".join(
    (
        "@",
        rf"[0-9)](?:{_WS}|[.-])[0-9]{{3}}",
        rf"[0-9]{_WS}+[A-Z][a-z]+{_WS}",
        r"[0-9]{3}-[0-9]{2}-[0-9]{4}",
        r"(?:[0-9][ -]?){13}",
    )
)


def _may_hold_pii(texts: Sequence[str]) -> np.ndarray:
    r"""Indices of the captions a pattern may match: profiled, the per-caption Python around the
    patterns cost ~3 us on every caption holding a digit (most hold a year or a size). Non-ASCII
    captions always go to the patterns (Python's ``\d`` and ``\s`` are Unicode-wide there)."""
    if not len(texts):
        return np.zeros(0, np.int64)
    values = pa.array(texts, pa.large_string())
    maybe = pc.or_(pc.invert(pc.string_is_ascii(values)), pc.match_substring_regex(values, _PREFILTER))
    return np.flatnonzero(pc.fill_null(maybe, False).to_numpy(zero_copy_only=False))
