"""Caption toxicity, hate and offensive-language scores from offline text scorers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audit.schemas import SCORE_COLUMNS
from audit.tables import active_rows, scatter, set_columns
from audit.text_scorers import TextScorer


@dataclass(frozen=True)
class TextSafetyConfig:
    batch_size: int = 256


def score_text_safety(table: pa.Table, cfg: TextSafetyConfig, *, scorers: Sequence[TextScorer]) -> pa.Table:
    """Adds each scorer's columns for every unquarantined row; other rows get nulls."""
    n = table.num_rows
    idx = active_rows(table)
    captions = table.column("caption").to_pylist()
    texts = [captions[i] for i in idx]
    columns: dict[str, pa.Array] = {}
    for scorer in scorers:
        parts: dict[str, list[np.ndarray]] = {c: [] for c in scorer.columns}
        for start in range(0, len(texts), cfg.batch_size):
            for name, values in scorer.score(texts[start : start + cfg.batch_size]).items():
                parts[name].append(values)
        for name, chunks in parts.items():
            values = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
            columns[name] = scatter(n, idx, values.astype(np.float32), SCORE_COLUMNS[name].type)
    return set_columns(table, columns)
