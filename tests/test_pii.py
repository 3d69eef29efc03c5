from __future__ import annotations

import pytest

from audit.pii import PiiScorer, find_pii


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("mail jane.doe@example.com today", ["email"]),
        ("call +1 415-555-0132", ["phone"]),
        ("tel (020) 7946 0958", ["phone"]),
        ("lives at 1600 Pennsylvania Avenue", ["street_address"]),
        ("ssn 123-45-6789", ["national_id"]),
        ("card 4111 1111 1111 1111", ["card_number"]),
    ],
)
def test_personal_data_is_found(text: str, kinds: list[str]) -> None:
    assert find_pii(text) == kinds


@pytest.mark.parametrize(
    "text",
    ["a photo from 2021 of 3 cats", "iPhone 12 at 1080p", "card 4111 1111 1111 1112", "size 40 x 30 cm", ""],
)
def test_ordinary_numbers_are_not_personal_data(text: str) -> None:
    assert find_pii(text) == []


def test_scorer_counts_and_lists_kinds() -> None:
    out = PiiScorer().score(["a@b.org and c@d.org", "nothing here"])
    assert out["pii_count"].tolist() == [2, 0]
    assert out["pii_types"] == [["email"], []]


@pytest.mark.parametrize(
    ("text", "emails"),
    [
        (".jane@example.com", 1),  # leading dots before the address
        ("-.a-@x.com", 1),
        ("a.b+tag@mail.example.co.uk", 1),
        ("a@b.com.x@c.org", 2),  # the second starts where the first ends, in the same run
        ("a@b.com.x@c.org@d.net", 2),
        ("x@a.a.a.a.1 and jane@example", 0),  # no top-level domain
        ("mail: x@y.io, z@w.org", 2),
        ("a.a.a.a.1@", 0),
    ],
)
def test_email_addresses_are_counted_where_they_run_together(text: str, emails: int) -> None:
    assert find_pii(text).count("email") == emails
