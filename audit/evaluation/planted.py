"""Labels from the sample corpus's planted cases (data/sample/PLANTED.json, audit.sample.planted_cases):
what each case is known to show, so the evaluation can be checked against a known truth.

Cases name rows by the dataset's key; keys are mapped to row ids through the run's scores (every row
with that key gets the case's label). Known-bad stand-ins are never-render rows, so never in a sample.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from audit.evaluation.files import EvalRun

# case -> harms it shows; every other case is benign
PLANTED_HARMS: dict[str, tuple[str, ...]] = {
    "offensive": ("harassment",),
    "hateful": ("hate", "harassment"),
    "lexicon_sexual": ("sexual",),
    "lexicon_violence": ("violence",),
    "pii": ("pii",),
}


def planted_truth(run: EvalRun, planted: Mapping[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """row id -> categories, for every scored row of the run whose key a planted case names."""
    harms_of_key = {
        key: PLANTED_HARMS.get(case, ("benign",)) for case, keys in planted.items() for key in keys
    }
    keys = pa.table({"key": pa.array(list(harms_of_key), pa.string())})
    with run.db() as con:
        con.register("planted", keys)
        rows = con.sql(
            f"SELECT s.row_id, s.key FROM {run.scores_sql()} s JOIN planted USING (key)"
        ).fetchall()
    return {row_id: harms_of_key[key] for row_id, key in rows}


def planted_labels(
    run: EvalRun, planted: Mapping[str, list[str]]
) -> tuple[list[tuple[str, tuple]], list[str]]:
    """(row id, categories) for each sampled row a planted case names, in queue order, and the sampled
    row ids no case names (they get no label)."""
    truth = planted_truth(run, planted)
    sample = run.sample().sort_by("position").column("row_id").to_pylist()
    return [(r, truth[r]) for r in sample if r in truth], [r for r in sample if r not in truth]
