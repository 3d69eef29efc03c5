"""Inter-annotator agreement on the double-labelled rows: Cohen's kappa (scikit-learn) between each
row's first and second labeller, per category (labelled or not) and over the whole label."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import cohen_kappa_score

from audit.evaluation.labels import CATEGORIES


def _kappa(a: list, b: list) -> float | None:
    """Cohen's kappa; None when it is undefined (both labellers gave one and the same value to every row)."""
    if len(set(a) | set(b)) < 2:
        return None
    value = float(cohen_kappa_score(a, b))
    return None if np.isnan(value) else value


def agreement(latest: pa.Table, sampled: pa.Array | pa.ChunkedArray) -> dict:
    """Kappa between the first and second labeller of each sampled row that has two (latest labels)."""
    keep = pc.and_(
        pc.is_in(latest.column("row_id"), value_set=sampled), pc.less_equal(latest.column("order"), 2)
    )
    rows = latest.filter(keep).to_pylist()
    pairs: dict[str, dict[int, dict]] = {}
    for r in rows:
        pairs.setdefault(r["row_id"], {})[r["order"]] = r
    both = [(p[1], p[2]) for p in pairs.values() if 1 in p and 2 in p]
    out: dict = {"rows": len(both), "method": "Cohen's kappa (sklearn.metrics.cohen_kappa_score), first vs "
                 "second labeller of each double-labelled row"}  # fmt: skip
    if not both:
        out.update(by_category=[], label=None, why="no row has labels from two reviewers yet")
        return out
    by_category = []
    for c in CATEGORIES:
        a, b = [int(x[c]) for x, _ in both], [int(y[c]) for _, y in both]
        by_category.append({"category": c, "kappa": _kappa(a, b),
                            "agreement": float(np.mean(np.asarray(a) == np.asarray(b))),
                            "first_yes": sum(a), "second_yes": sum(b)})  # fmt: skip
    whole = [
        ("+".join(c for c in CATEGORIES if x[c]), "+".join(c for c in CATEGORIES if y[c])) for x, y in both
    ]
    a, b = [x for x, _ in whole], [y for _, y in whole]
    out.update(
        by_category=by_category,
        label={"kappa": _kappa(a, b), "agreement": float(np.mean([x == y for x, y in whole]))},
    )
    return out
