"""Mask lexicon terms in text shown by the report: each match keeps its first character and the rest
becomes asterisks ("n***" for "nude"), in the original text, whatever its case, diacritics,
leetspeak or zero-width characters.

Matching is the lexicon scorer's (audit.lexicon: the same automaton, the same word boundaries), run
on the text normalised character by character so every match maps back to the characters of the
original text it came from. Time is linear in the text's length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from audit.lexicon import Lexicon, normalize, on_word_boundaries

MASK = "*"


@dataclass
class Masker:
    lexicon: Lexicon
    masked_terms: set[str] = field(default_factory=set)  # normalised terms masked so far (for tests)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """[start, end) character ranges of ``text`` that hold a lexicon match."""
        pieces = [normalize(ch) for ch in text]
        norm = "".join(pieces)
        origin: list[int] = []  # normalised position -> index of the original character
        for i, piece in enumerate(pieces):
            origin.extend([i] * len(piece))
        out = []
        for end, matches in self.lexicon.automaton.iter(norm):
            begin = end - len(matches[0].term) + 1
            if not on_word_boundaries(norm, begin, end):
                continue  # inside a longer word, as the scorer decides
            out.append((origin[begin], origin[end] + 1))
            self.masked_terms.add(matches[0].term)
        return out

    def mask(self, text: str | None) -> str | None:
        if not text:
            return text
        chars = list(text)
        for start, end in self.spans(text):
            for i in range(start + 1, end):
                if not chars[i].isspace():
                    chars[i] = MASK
        return "".join(chars)
