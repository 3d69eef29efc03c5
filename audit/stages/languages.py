"""Language of each caption (and of the text read from each image), and the not-applicable rule:
a scorer's score on a row outside its languages is null, with the scorer named in
``not_applicable``."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.languages import UNDETERMINED, LanguageDetector, scorer_languages
from audit.tables import active_rows, has_usable_caption, set_columns


def detect_caption_languages(table: pa.Table, *, detector: LanguageDetector) -> pa.Table:
    """Adds caption_language / caption_language_conf for every unquarantined row with a usable
    caption; other rows get null."""
    idx = active_rows(table)
    idx = idx[has_usable_caption(table)[idx]]
    return _detect(table, detector, "caption", idx, "caption")


def detect_text_languages(
    table: pa.Table, *, detector: LanguageDetector, column: str, prefix: str
) -> pa.Table:
    """Adds ``{prefix}_language`` / ``{prefix}_language_conf`` for rows whose ``column`` holds text."""
    values = table.column(column).to_pylist()
    idx = np.asarray([i for i, v in enumerate(values) if v], np.int64)
    return _detect(table, detector, column, idx, prefix)


def _detect(
    table: pa.Table, detector: LanguageDetector, column: str, idx: np.ndarray, prefix: str
) -> pa.Table:
    n = table.num_rows
    texts = table.column(column).to_pylist()
    lang: list[str | None] = [None] * n
    conf: list[float | None] = [None] * n
    for i, found in zip(idx.tolist(), detector.detect([texts[i] for i in idx.tolist()]), strict=True):
        lang[i], conf[i] = found.language, found.confidence
    return set_columns(
        table,
        {
            f"{prefix}_language": pa.array(lang, pa.string()),
            f"{prefix}_language_conf": pa.array(conf, pa.float32()),
        },
    )


def not_applicable_lists(table: pa.Table) -> list[list[str]]:
    if "not_applicable" not in table.column_names:
        return [[] for _ in range(table.num_rows)]
    return [list(v) if v else [] for v in table.column("not_applicable").to_pylist()]


def scope_scores(
    table: pa.Table,
    scorers: Iterable[object],
    *,
    language_column: str,
    column_prefix: str = "",
    name_prefix: str = "",
) -> pa.Table:
    """Nulls each scorer's columns on rows whose language it is not valid for and appends
    ``name_prefix + scorer.name`` to those rows' ``not_applicable``. Rows without a detected
    language (no text scored) are left as they are."""
    langs = table.column(language_column)
    na: list[list[str]] | None = None
    columns: dict[str, pa.Array] = {}
    for scorer in scorers:
        valid = scorer_languages(scorer)
        if valid is None:
            continue
        # applies() in Arrow: a detected language that is neither undetermined nor valid
        # (is_in gives False, not null, for a null language: such a row is never outside)
        inside = pc.is_in(langs, value_set=pa.array(sorted({*valid, UNDETERMINED}), pa.string()))
        outside = pc.and_(pc.is_valid(langs), pc.invert(inside)).to_numpy(zero_copy_only=False)
        if not outside.any():
            continue
        if na is None:
            na = not_applicable_lists(table)
        for i in np.flatnonzero(outside).tolist():
            na[i].append(name_prefix + scorer.name)  # type: ignore[attr-defined]
        keep = pa.array(~outside)
        for col in scorer.columns:  # type: ignore[attr-defined]
            name = column_prefix + col
            arr = columns.get(name, table.column(name))
            columns[name] = pc.if_else(keep, arr, pa.scalar(None, arr.type))
    if na is None:
        if "not_applicable" in table.column_names:
            return table
        offsets = pa.array(np.zeros(table.num_rows + 1, np.int32))
        empty = pa.ListArray.from_arrays(offsets, pa.array([], pa.string()))
        return set_columns(table, {"not_applicable": empty})
    columns["not_applicable"] = pa.array(na, pa.list_(pa.string()))
    return set_columns(table, columns)
