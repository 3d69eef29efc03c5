"""NudeNet body-part detections on every decoded image."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from audit.images import DecodedImage, as_pil
from audit.nudenet_scorer import NudeNetScorer
from audit.schemas import SCORE_COLUMNS
from audit.tables import set_columns


def score_nudity(
    table: pa.Table, *, model: NudeNetScorer, images: Mapping[int, DecodedImage], batch_size: int = 32
) -> pa.Table:
    """Adds the nudenet_* columns for every unquarantined row with a decoded image; other rows get
    null (never 0.0: an image nobody looked at is not clean)."""
    reasons = table.column("quarantine_reason").to_pylist()
    idx = [i for i in sorted(images) if reasons[i] is None]
    n = table.num_rows
    values: dict[str, list] = {}
    for start in range(0, len(idx), batch_size):
        part = idx[start : start + batch_size]
        for name, column in model.score([as_pil(images[i]) for i in part]).items():
            values.setdefault(name, []).extend(column)
    columns = {}
    for name in (
        "nudenet_genitalia_exposed",
        "nudenet_breast_exposed",
        "nudenet_buttocks_exposed",
        "nudenet_covered",
        "nudenet_exposed_max",
        "nudenet_exposed_count",
        "nudenet_class_max",
        "nudenet_class_counts",
    ):
        full: list = [None] * n
        for i, v in zip(idx, values.get(name, []), strict=True):
            full[i] = v
        columns[name] = pa.array(full, SCORE_COLUMNS[name].type)
    return set_columns(table, columns)
