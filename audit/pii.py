"""Personal data in captions: e-mail addresses, phone numbers, street addresses, ID-like numbers."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from audit.schemas import ModelRecord

PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b", re.IGNORECASE),
    "phone": re.compile(
        r"(?<![\w-])(?<!\d )(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)|\d{2,4})"
        r"[\s.-]\d{3,4}[\s.-]\d{3,4}(?![\w-])(?! \d)"
    ),
    "street_address": re.compile(
        r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}"
        r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl)\b\.?"
    ),
    "national_id": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),  # US SSN shape
    "card_number": re.compile(r"\b(?:\d[ -]?){13,19}\b"),
}


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_pii(text: str) -> list[str]:
    """The kinds of personal data in one caption, one entry per occurrence."""
    if "@" not in text and not any(ch.isdigit() for ch in text):
        return []  # every pattern needs an @ or a digit: the common case costs one scan
    found: list[str] = []
    for kind, pattern in PATTERNS.items():
        for m in pattern.finditer(text):
            if kind == "card_number":
                digits = re.sub(r"\D", "", m.group())
                if not (13 <= len(digits) <= 19 and _luhn_ok(digits)):
                    continue
            found.append(kind)
    return found


class PiiScorer:
    name = "pii"
    columns = ("pii_count", "pii_types")

    def __init__(self) -> None:
        self.record = ModelRecord(
            name="mmaudit-pii-patterns", source="audit.pii", weights="package", version="1"
        )

    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray | list]:
        found = [find_pii(t) for t in texts]
        return {
            "pii_count": np.asarray([len(f) for f in found], np.int32),
            "pii_types": [sorted(set(f)) for f in found],
        }
