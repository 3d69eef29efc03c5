"""What protects the reviewer: lexicon terms masked until revealed, and a count of revealed images with
a break reminder.

Captions are shown as plain text (never Markdown or HTML), so terms are marked with characters, not
styling: each lexicon match is set in ``⟦ ⟧`` and, until revealed, keeps its first character with the
rest as asterisks ("⟦n***⟧"), as the report masks them. Matching is the lexicon scorer's (the run's own
lexicon, the same automaton and word boundaries; audit.report_mask.Masker maps matches back to the
original characters whatever their case, diacritics or leetspeak), in time linear in the caption.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

from audit.errors import ConfigError
from audit.lexicon import Lexicon
from audit.report_mask import MASK, Masker
from audit.review.run import ReviewRun

OPEN, CLOSE = "⟦", "⟧"
BREAK_ENV = "MMAUDIT_BREAK_AFTER"  # revealed images per session before the break reminder
DEFAULT_BREAK_AFTER = 50


@functools.lru_cache(maxsize=4)
def _masker(folder: str | None) -> Masker:
    return Masker(Lexicon(folder))


def masker_for(run: ReviewRun) -> Masker:
    """The lexicon the run was audited with (text.lexicons of its config; the packaged one if unset)."""
    text = run.manifest.config.get("text") or {}
    folder = text.get("lexicons") if isinstance(text, dict) else None
    return _masker(str(folder) if folder else None)


def term_spans(masker: Masker, text: str | None) -> list[tuple[int, int]]:
    """[start, end) character ranges of the lexicon matches in ``text``, merged where they overlap."""
    if not text:
        return []
    merged: list[tuple[int, int]] = []
    for start, end in sorted(masker.spans(text)):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _mask(term: str) -> str:
    return term[:1] + "".join(c if c.isspace() else MASK for c in term[1:])


def marked_caption(masker: Masker, text: str | None, reveal: bool = False) -> str:
    """The caption with every lexicon term set in ⟦ ⟧, masked unless ``reveal``; "(none)" for no caption."""
    if text is None:
        return "(none)"
    out, at = [], 0
    for start, end in term_spans(masker, text):
        term = text[start:end]
        out += [text[at:start], OPEN, term if reveal else _mask(term), CLOSE]
        at = end
    out.append(text[at:])
    return "".join(out)


def masked_terms(masker: Masker, text: str | None, reveal: bool = False) -> list[str]:
    """The matched terms in order, masked unless ``reveal`` (what the detail page lists)."""
    return [text[s:e] if reveal else _mask(text[s:e]) for s, e in term_spans(masker, text)] if text else []


def break_after(value: str | int | None = None) -> int:
    """Revealed images per session before the break reminder: ``value`` (the app's --break-after), else
    $MMAUDIT_BREAK_AFTER, else DEFAULT_BREAK_AFTER. ConfigError naming the source for a bad number."""
    source = "--break-after"
    if value is None:
        value, source = os.environ.get(BREAK_ENV), f"${BREAK_ENV}"
    if value is None or value == "":
        return DEFAULT_BREAK_AFTER
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{source}: {value!r} is not a whole number of images") from None
    if n < 1:
        raise ConfigError(f"{source}: must be at least 1, got {n}")
    return n


@dataclass
class RevealLog:
    """Images a reviewer revealed in this session (each image counts once) and since their last break."""

    limit: int = DEFAULT_BREAK_AFTER
    revealed: set[str] = field(default_factory=set)
    since_break: int = 0

    def reveal(self, row_id: str) -> bool:
        """Count ``row_id``'s image as revealed; False if it already was."""
        if row_id in self.revealed:
            return False
        self.revealed.add(row_id)
        self.since_break += 1
        return True

    @property
    def count(self) -> int:
        return len(self.revealed)

    @property
    def break_due(self) -> bool:
        return self.since_break >= self.limit

    def took_break(self) -> None:
        self.since_break = 0
