"""Caption toxicity, hate and offensive-language scores from offline text scorers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute

from audit.schemas import SCORE_COLUMNS
from audit.tables import active_rows, has_usable_caption, scatter, scatter_array, set_columns
from audit.text_scorers import TextScorer


@dataclass(frozen=True)
class TextSafetyConfig:
    batch_size: int = 256


def score_text_safety(table: pa.Table, cfg: TextSafetyConfig, *, scorers: Sequence[TextScorer]) -> pa.Table:
    """Adds each scorer's columns for every unquarantined row with a usable caption; other rows
    (quarantined, image-only) get nulls."""
    n = table.num_rows
    idx = active_rows(table)
    idx = idx[has_usable_caption(table)[idx]]
    captions = table.column("caption").to_pylist()
    texts = [captions[i] for i in idx]
    columns: dict[str, pa.Array] = {}
    for scorer in scorers:
        parts: dict[str, list] = {c: [] for c in scorer.columns}
        for start in range(0, len(texts), cfg.batch_size):
            for name, values in scorer.score(texts[start : start + cfg.batch_size]).items():
                parts[name].append(values)
        for name, chunks in parts.items():
            columns[name] = _column(n, idx, chunks, SCORE_COLUMNS[name].type)
    return set_columns(table, columns)


def _column(n: int, idx: np.ndarray, chunks: list, typ: pa.DataType) -> pa.Array:
    """Scatter a scorer's values to their rows; NaN (a class the model lacks) becomes null."""
    if pa.types.is_list(typ):
        return scatter_array(n, idx, pa.array([v for chunk in chunks for v in chunk], typ))
    values = np.concatenate(chunks) if chunks else np.zeros(0, typ.to_pandas_dtype())
    arr = scatter(n, idx, values.astype(typ.to_pandas_dtype()), typ)
    if pa.types.is_floating(typ) and values.size and np.isnan(values).any():
        arr = pa.compute.if_else(pa.compute.is_nan(arr), pa.scalar(None, typ), arr)
    return arr
