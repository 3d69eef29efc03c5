"""Text inside images as a second text side: read it (OCR), detect its language, and run the text
scorers on it into ``ocr_<column>`` columns, null outside each scorer's languages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from audit.images import DecodedImage, as_pil
from audit.languages import LanguageDetector, applies
from audit.ocr import OcrReader
from audit.schemas import SCORE_COLUMNS
from audit.stages.languages import detect_text_languages, not_applicable_lists, scope_scores
from audit.stages.text_safety import _column
from audit.tables import set_columns
from audit.text_scorers import TextScorer


def read_image_text(table: pa.Table, *, reader: OcrReader, images: Mapping[int, DecodedImage]) -> pa.Table:
    """Adds ocr_text / ocr_confidence / ocr_lines for every unquarantined row with a decoded image.

    An image where nothing was read gets "" (no text found) unless the caption is in a language
    whose script the recognition model cannot read (Russian, Korean, Arabic, ...): there an empty
    result is not evidence of no text, so ocr_text is null and ``ocr`` goes into not_applicable.
    """
    n = table.num_rows
    reasons = table.column("quarantine_reason").to_pylist()
    idx = [i for i in sorted(images) if reasons[i] is None]
    caption_lang = (
        table.column("caption_language").to_pylist()
        if "caption_language" in table.column_names
        else [None] * n
    )
    text: list[str | None] = [None] * n
    conf: list[float | None] = [None] * n
    lines: list[int | None] = [None] * n
    na = not_applicable_lists(table)
    for i, found in zip(idx, reader.read([as_pil(images[i]) for i in idx]), strict=True):
        if not found.text and not applies(reader.languages, caption_lang[i]):
            na[i].append(reader.name)
            continue
        text[i], conf[i], lines[i] = found.text, found.confidence, found.lines
    return set_columns(
        table,
        {
            "ocr_text": pa.array(text, pa.string()),
            "ocr_confidence": pa.array(conf, pa.float32()),
            "ocr_lines": pa.array(lines, pa.int32()),
            "not_applicable": pa.array(na, pa.list_(pa.string())),
        },
    )


def score_image_text(
    table: pa.Table, *, scorers: Sequence[TextScorer], detector: LanguageDetector, batch_size: int = 256
) -> pa.Table:
    """Runs every text scorer on the rows whose image text is not empty (ocr_<column>); rows without
    text read get null. Then the image text's language scopes those scores."""
    n = table.num_rows
    values = table.column("ocr_text").to_pylist()
    idx = np.asarray([i for i, v in enumerate(values) if v], np.int64)
    texts = [values[i] for i in idx.tolist()]
    columns: dict[str, pa.Array] = {}
    for scorer in scorers:
        parts: dict[str, list] = {c: [] for c in scorer.columns}
        for start in range(0, len(texts), batch_size):
            for name, column in scorer.score(texts[start : start + batch_size]).items():
                parts[name].append(column)
        for name, chunks in parts.items():
            columns[f"ocr_{name}"] = _column(n, idx, chunks, SCORE_COLUMNS[f"ocr_{name}"].type)
    table = set_columns(table, columns)
    table = detect_text_languages(table, detector=detector, column="ocr_text", prefix="ocr")
    return scope_scores(
        table, scorers, language_column="ocr_language", column_prefix="ocr_", name_prefix="ocr:"
    )
