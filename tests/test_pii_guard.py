"""The guards (the batch's RE2 prefilter, then an "@", a "-", enough digits per pattern) never
hide a match: the scorer and find_pii equal every pattern run on every caption."""

from __future__ import annotations

import numpy as np

from audit import pii


def _every_pattern(text: str) -> list[str]:
    found = []
    for kind in pii.PATTERNS:
        for m in pii._matches(kind, text):
            if kind == "card_number":
                digits = pii._NON_DIGIT.sub("", m.group())
                if not (13 <= len(digits) <= 19 and pii._luhn_ok(digits)):
                    continue
            found.append(kind)
    return found


PIECES = ["4", "55", "123", "4111", "1111", "(555)", "+1", " ", "-", ".", "@", "a", "x.org", "Main ",
          "Street", "St", "Oak ", "\n", "\u0663", "\u0664\u0665", "mail", "_", "é", "\x0b", "\x1c",
          "\u00a0", "Elm\x0b", ")", "12-34-5678", "4111-1111-1111-1111"]  # fmt: skip


def test_guards_change_nothing_on_random_pieces() -> None:
    rng = np.random.default_rng(11)
    texts = ["".join(rng.choice(PIECES, size=int(rng.integers(1, 25)))) for _ in range(20000)]
    texts += [
        "call 555-123-4567 now", "ssn 123-45-6789", "4111 1111 1111 1111", "me@x.org", "12 Main Street",
        "\u0661\u0662\u0663-\u0664\u0665-\u0666\u0667\u0668\u0669",  # Arabic-Indic digits: \\d matches them
    ]  # fmt: skip
    kinds: set[str] = set()
    scored = pii.PiiScorer().score(texts)
    for i, t in enumerate(texts):
        want = _every_pattern(t)
        assert pii.find_pii(t) == want, t
        assert scored["pii_count"][i] == len(want) and scored["pii_types"][i] == sorted(set(want)), t
        kinds.update(want)
    assert kinds == set(pii.PATTERNS)  # the pieces make every kind of match, not only misses
