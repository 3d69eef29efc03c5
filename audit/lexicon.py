"""Lexicon matching on word boundaries with pyahocorasick, robust to case, diacritics,
leetspeak and zero-width characters.

All captions of a batch are normalised and joined into one string so the automaton runs once
per batch; that keeps the cost per caption to a few hundred nanoseconds.
"""

from __future__ import annotations

import bisect
import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ahocorasick
import numpy as np

from audit.config import packaged_file
from audit.errors import ConfigError

CATEGORIES = ("slur", "sexual", "violence")
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
LEET_MAP = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
LEET = str.maketrans(LEET_MAP)
_FOLD_CACHE_MAX = 1 << 16  # distinct code points kept; past that, each new one is looked up again


class _FoldTable(dict):
    """Code point -> its NFKD decomposition without combining marks ("" for zero-width characters),
    worked out once per code point, for ``str.translate``.

    Decomposing each character alone gives what decomposing the whole text gives once the marks are
    dropped: NFKD only decomposes characters and then reorders marks, and the marks all go. It costs
    one table lookup per character, where ``unicodedata.normalize`` reorders a run of marks by
    insertion sort, quadratic in the run's length ("e" + 10^5 mixed marks: about a minute).
    """

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        folded = "" if ch in ZERO_WIDTH else _strip_marks(unicodedata.normalize("NFKD", ch))
        if len(self) < _FOLD_CACHE_MAX:
            self[code] = folded
        return folded


def _strip_marks(text: str) -> str:
    return "".join(c for c in text if not unicodedata.combining(c))


_FOLD = _FoldTable()
_ASCII_FOLD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "".join(LEET_MAP).encode(),
    b"abcdefghijklmnopqrstuvwxyz" + "".join(LEET_MAP.values()).encode(),
)
SEPARATOR = "\x00"  # joins a batch's captions; a NUL is a word boundary, so no match spans two


def normalize(text: str) -> str:
    """Casefold, drop zero-width characters and diacritics, undo common leetspeak."""
    if not text.isascii():
        text = text.translate(_FOLD).casefold()  # linear in the text whatever its marks
    return text.lower().translate(LEET)


def _unspaced(ch: str) -> bool:
    """Kana and CJK ideographs: scripts written without spaces between words, where a term's edge
    is no word boundary (Japanese and Chinese terms match inside a sentence)."""
    return "\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def on_word_boundaries(text: str, begin: int, end: int) -> bool:
    """Whether text[begin:end + 1] is a whole word (or words): no letter or digit right before or
    after it, except at the edge of a term in kana or CJK ideographs (written without spaces)."""
    if begin > 0 and text[begin - 1].isalnum() and not _unspaced(text[begin]):
        return False
    return not (end + 1 < len(text) and text[end + 1].isalnum() and not _unspaced(text[end]))


@dataclass(frozen=True)
class LexiconMatch:
    category: str
    term: str
    group: str | None


class Lexicon:
    """Terms by category, loaded from ``<category>.txt`` files (``term`` or ``term<TAB>group``)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        folder = Path(folder) if folder else packaged_file("lexicons", "")
        self.automaton = ahocorasick.Automaton()
        digest = hashlib.sha256()
        self.sizes: dict[str, int] = {}
        # English lists are <category>.txt; other languages <category>.<iso 639-1>.txt (each file
        # names its source and licence in its header). All terms go into one automaton: a German
        # slur in an English caption is still a slur.
        self.languages: set[str] = {"en"}
        for category in CATEGORIES:
            path = folder / f"{category}.txt"
            if not path.is_file():
                raise ConfigError(f"text.lexicons: missing lexicon file {path}")
            others = sorted(folder.glob(f"{category}.*.txt"))
            count = 0
            for lang, file in [("en", path)] + [(f.name.split(".")[1], f) for f in others]:
                text = file.read_text(encoding="utf-8")
                digest.update(text.encode())
                self.languages.add(lang)
                for line in text.splitlines():
                    if not line.strip() or line.startswith("#"):
                        continue
                    term, _, group = line.partition("\t")
                    key = normalize(term.strip())
                    matches = self.automaton.get(key, ()) if key in self.automaton else ()
                    match = LexiconMatch(category, key, group.strip() or None)
                    if match not in matches:  # listed in two languages' files: one match
                        self.automaton.add_word(key, (*matches, match))
                    count += 1
            self.sizes[category] = count
        self.automaton.make_automaton()
        self.sha256 = digest.hexdigest()

    def match(self, captions: Sequence[str]) -> list[list[LexiconMatch]]:
        """The matches of each caption, in order of appearance."""
        found = self.match_sparse(captions)
        return [found.get(i, []) for i in range(len(captions))]

    def match_sparse(self, captions: Sequence[str]) -> dict[int, list[LexiconMatch]]:
        """caption index -> its matches, for the (few) captions that have any."""
        # Non-ASCII captions are normalised one by one (that can change their length); the ASCII
        # majority is lowered and de-leeted in one pass over the joined batch, which keeps lengths,
        # so caption start offsets stay valid.
        parts = [c if c.isascii() else normalize(c) for c in captions]
        starts = np.cumsum([0] + [len(p) + 1 for p in parts[:-1]]).tolist() if parts else []
        # bytes.translate on the UTF-8 encoding rewrites ASCII bytes only: same character count
        joined = SEPARATOR.join(parts).encode("utf-8").translate(_ASCII_FOLD).decode("utf-8")
        out: dict[int, list[LexiconMatch]] = {}
        for end, matches in self.automaton.iter(joined):
            term_len = len(matches[0].term)
            begin = end - term_len + 1
            if not on_word_boundaries(joined, begin, end):
                continue  # inside a longer word: "Scunthorpe" is not a match
            row = bisect.bisect_right(starts, begin) - 1
            out.setdefault(row, []).extend(matches)
        return out


class LexiconScorer:
    """Per-category hit counts and the matched terms, as score columns."""

    name = "lexicon"
    columns = ("lexicon_slur_hits", "lexicon_sexual_hits", "lexicon_violence_hits", "lexicon_terms")

    def __init__(self, folder: str | Path | None = None) -> None:
        from audit.schemas import ModelRecord

        self.lexicon = Lexicon(folder)
        self.languages = frozenset(self.lexicon.languages)  # those with a lexicon file
        source = str(folder) if folder else "packaged"
        self.record = ModelRecord(
            name="mmaudit-lexicon", source=source, weights="file", sha256=self.lexicon.sha256
        )

    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray | list]:
        found = self.lexicon.match_sparse(texts)
        counts = {c: np.zeros(len(texts), np.int32) for c in CATEGORIES}
        no_terms: list[str] = []
        terms: list[list[str]] = [no_terms] * len(texts)  # shared empty list: most captions match nothing
        for i, matches in found.items():
            for m in matches:
                counts[m.category][i] += 1
            terms[i] = [f"{m.category}:{m.term}" + (f" ({m.group})" if m.group else "") for m in matches]
        return {
            "lexicon_slur_hits": counts["slur"],
            "lexicon_sexual_hits": counts["sexual"],
            "lexicon_violence_hits": counts["violence"],
            "lexicon_terms": terms,
        }
