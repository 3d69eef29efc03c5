"""Language of each caption (and of the text read from each image), and the not-applicable rule:
a scorer's score on a row outside its languages is null, with the scorer named in
``not_applicable``."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.languages import UNDETERMINED, LanguageDetector, scorer_languages
from audit.tables import active_rows, has_usable_caption, scatter, scatter_array, set_columns


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
    texts = table.column(column).take(pa.array(idx, pa.int64())).to_pylist() if idx.size else []
    found = detector.detect(texts)
    lang = pa.array([d.language for d in found], pa.string())
    conf = np.fromiter((d.confidence for d in found), np.float32, len(found))
    return set_columns(
        table,
        {
            f"{prefix}_language": scatter_array(n, idx, lang),
            f"{prefix}_language_conf": scatter(n, idx, conf, pa.float32()),
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
    names: list[str] = []
    outside_masks: list[np.ndarray] = []
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
        names.append(name_prefix + scorer.name)  # type: ignore[attr-defined]
        outside_masks.append(outside)
        keep = pa.array(~outside)
        for col in scorer.columns:  # type: ignore[attr-defined]
            name = column_prefix + col
            arr = columns.get(name, table.column(name))
            columns[name] = pc.if_else(keep, arr, pa.scalar(None, arr.type))
    if not names and "not_applicable" in table.column_names:
        return table
    columns["not_applicable"] = _appended(_not_applicable(table), names, outside_masks)
    return set_columns(table, columns)


def _not_applicable(table: pa.Table) -> pa.ListArray:
    """The table's not_applicable lists so far (empty ones where it has none; nulls as empty)."""
    n = table.num_rows
    if "not_applicable" not in table.column_names:
        return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string()))
    col = table.column("not_applicable").combine_chunks()
    if col.null_count:
        col = pc.if_else(pc.is_null(col), pa.scalar([], col.type), col)
    return col


def _appended(existing: pa.ListArray, names: list[str], outside: list[np.ndarray]) -> pa.ListArray:
    """``existing`` with ``names[k]`` appended to every row where ``outside[k]``, in ``names`` order
    (no Python object per row: the lists are built from offsets)."""
    if not names:
        return existing
    n = len(existing)
    had = pc.list_value_length(existing).to_numpy(zero_copy_only=False).astype(np.int64)
    mask = np.stack(outside, axis=1)  # (rows, names): row-major order is each row's append order
    added = mask.sum(axis=1)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(had + added, out=offsets[1:])
    # where each old value and each appended name lands in the new values
    old_rows = np.repeat(np.arange(n), had)
    old_pos = offsets[old_rows] + (np.arange(had.sum()) - np.repeat(np.cumsum(had) - had, had))
    new_rows, which = np.nonzero(mask)
    rank = np.cumsum(mask, axis=1)[new_rows, which] - 1  # the name's place among the row's appends
    new_pos = offsets[new_rows] + had[new_rows] + rank
    source = pa.concat_arrays([existing.flatten().cast(pa.string()), pa.array(names, pa.string())])
    take = np.empty(offsets[-1], np.int64)
    take[old_pos] = np.arange(old_pos.size)
    take[new_pos] = old_pos.size + which
    values = source.take(pa.array(take))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)
