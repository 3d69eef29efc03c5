"""Precision, recall, F1 and prevalence from the labelled sample, weighted by its design.

Each labelled row stands for the rows of its stratum: within a set of labelled rows S (a split), a row
of stratum h weighs N_h / m_h, N_h the stratum's rows in the frame and m_h its labelled rows in S (the
Horvitz-Thompson weight, with the labelled rows taken as a random subsample of the drawn ones). So:

- precision of a rule = sum(w * flagged * harmful) / sum(w * flagged)   (rows it flags that are harmful)
- recall of a rule    = sum(w * flagged * harmful) / sum(w * harmful)   (harmful rows it flags; the
  unflagged strata, weighted up to their size, carry the harmful rows it misses)
- prevalence          = sum(w * harmful) / sum(w)                       (of the frame)

with the effective-size Wilson intervals of audit.evaluation.intervals; F1 = 2 TP / (flagged + harmful),
weighted, with a stratified bootstrap percentile interval. "harmful" is the first labeller's latest
label having the rule's harm category; rows labelled unsure are left out (and counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.evaluation.files import EvalRun
from audit.evaluation.intervals import (
    Proportion,
    percentile_interval,
    stratified_resamples,
    weighted_proportion,
    wilson,
)
from audit.evaluation.labels import HARMS, latest_labels
from audit.rules import Condition, Rule, rule_mask

MAX_CURVE_POINTS = 60


@dataclass
class Labelled:
    """The sampled rows with a usable first label, aligned arrays; ``scores`` holds their score rows."""

    row_id: np.ndarray
    stratum: np.ndarray
    stratum_rows: np.ndarray  # N_h of each row's stratum
    split: np.ndarray  # 'dev' | 'test'
    truth: dict[str, np.ndarray]  # harm -> the first labeller says so
    scores: pa.Table
    counts: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.row_id)

    def weights(self, mask: np.ndarray) -> np.ndarray:
        """N_h / m_h for the rows in ``mask`` (m_h: rows of stratum h in it), 0 elsewhere."""
        w = np.zeros(self.n)
        for name in set(self.stratum[mask].tolist()):
            rows = mask & (self.stratum == name)
            w[rows] = self.stratum_rows[rows][0] / rows.sum()
        return w

    def mask(self, rule: Rule) -> np.ndarray:
        return rule_mask(self.scores, rule) if self.n else np.zeros(0, dtype=bool)


def load_labelled(run: EvalRun) -> Labelled:
    """Join the sample, the first labeller's latest labels and the rows' scores."""
    sample = run.sample()
    latest = latest_labels(run)
    in_sample = pc.is_in(latest.column("row_id"), value_set=sample.column("row_id"))
    first = latest.filter(pc.and_(in_sample, pc.equal(latest.column("order"), 1)))
    unsure = first.filter(first.column("unsure"))
    usable = first.filter(pc.invert(first.column("unsure")))
    by_row = {r["row_id"]: r for r in usable.to_pylist()}
    rows = [r for r in sample.sort_by("row_id").to_pylist() if r["row_id"] in by_row]
    second = latest.filter(pc.and_(in_sample, pc.greater(latest.column("order"), 1)))
    counts = {
        "sampled_rows": sample.num_rows,
        "labelled_rows": first.num_rows,
        "unsure_rows": unsure.num_rows,
        "unlabelled_rows": sample.num_rows - first.num_rows,
        "usable_rows": len(rows),
        "labels": latest.num_rows,
        "labels_outside_sample": int(pc.sum(pc.invert(in_sample)).as_py() or 0),
        "reviewers": sorted(set(latest.filter(in_sample).column("reviewer").to_pylist())),
        "double_labelled_rows": len(set(second.column("row_id").to_pylist())),
    }  # fmt: skip
    ids = [r["row_id"] for r in rows]
    return Labelled(
        row_id=np.asarray(ids, dtype=object),
        stratum=np.asarray([r["stratum"] for r in rows], dtype=object),
        stratum_rows=np.asarray([r["stratum_rows"] for r in rows], dtype=float),
        split=np.asarray([r["split"] for r in rows], dtype=object),
        truth={h: np.asarray([by_row[i][h] for i in ids], dtype=bool) for h in HARMS},
        scores=_scores_of(run, ids),
        counts=counts,
    )


def _scores_of(run: EvalRun, row_ids: list[str]) -> pa.Table:
    """The score rows of ``row_ids``, in that order (DuckDB over the shards' score files)."""
    wanted = pa.table(
        {"row_id": pa.array(row_ids, pa.string()), "n": pa.array(range(len(row_ids)), pa.int64())}
    )
    with run.db() as con:
        con.register("wanted", wanted)
        table = con.sql(
            f"SELECT s.* FROM wanted w JOIN {run.scores_sql()} s USING (row_id) ORDER BY w.n"
        ).to_arrow_table()
    if table.num_rows != len(row_ids):
        from audit.errors import InputFileError

        raise InputFileError(
            f"{run.folder.url}: {len(row_ids) - table.num_rows} sampled rows are missing from the scores "
            "(the run changed since the sample was drawn; draw it again with --replace)"
        )
    return table


# --- one rule (or one condition) at one threshold --------------------------------------------------


@dataclass(frozen=True)
class Measured:
    precision: Proportion
    recall: Proportion
    f1: float | None
    f1_interval: tuple[float, float] | None

    def as_dict(self) -> dict:
        return {
            "precision": self.precision.as_dict(),
            "recall": self.recall.as_dict(),
            "f1": {"estimate": self.f1, "low": self.f1_interval[0] if self.f1_interval else None,
                   "high": self.f1_interval[1] if self.f1_interval else None},
        }  # fmt: skip


def precision_recall(
    data: Labelled, flagged: np.ndarray, harmful: np.ndarray, rows: np.ndarray, confidence: float
) -> tuple[Proportion, Proportion]:
    """Weighted precision and recall over ``rows``. Recall's lower end is also held under the recall
    the rows could have if every stratum where no harmful unflagged row was labelled held as many as
    its Wilson upper bound allows (unseen_misses): a rare harm missed by the flagger is exactly what a
    sample of a large unflagged stratum may not show, and recall must not be overrated for it."""
    w = data.weights(rows)
    sel_f, sel_y = rows & flagged, rows & harmful
    precision = weighted_proportion(harmful[sel_f], w[sel_f], confidence)
    recall = weighted_proportion(flagged[sel_y], w[sel_y], confidence)
    if recall.estimate is not None:
        found = float(np.sum(w[sel_y & flagged]))
        missed = float(np.sum(w[sel_y & ~flagged])) + unseen_misses(data, flagged, harmful, rows, confidence)
        floor = found / (found + missed) if found + missed > 0 else 0.0
        recall = replace(recall, low=min(recall.low, floor))
    return precision, recall


def unseen_misses(
    data: Labelled, flagged: np.ndarray, harmful: np.ndarray, rows: np.ndarray, confidence: float
) -> float:
    """Harmful rows the flagger may miss in strata where none of the labelled unflagged rows is harmful:
    per such stratum (not labelled in full), its unflagged rows times the Wilson upper bound of 0 of the
    labelled ones."""
    total = 0.0
    for name in sorted(set(data.stratum[rows].tolist())):
        idx = rows & (data.stratum == name)
        m, size = int(idx.sum()), float(data.stratum_rows[idx][0])
        unflagged = idx & ~flagged
        k = int(unflagged.sum())
        if k and m < size and not (unflagged & harmful).any():
            total += size * (k / m) * wilson(0, k, confidence)[1]
    return total


def f1_of(flagged: np.ndarray, harmful: np.ndarray, w: np.ndarray) -> float | None:
    """Weighted F1 = 2 TP / (flagged + harmful); None when there is neither."""
    denom = float(np.sum(w * flagged) + np.sum(w * harmful))
    return 2 * float(np.sum(w * flagged * harmful)) / denom if denom > 0 else None


def measure(
    data: Labelled,
    flagged: np.ndarray,
    harmful: np.ndarray,
    rows: np.ndarray,
    resamples: np.ndarray,
    confidence: float,
) -> Measured:
    """Precision and recall with intervals, F1 with a bootstrap interval, over ``rows``.
    ``resamples`` are stratified resample counts of the rows (audit.evaluation.intervals)."""
    w = data.weights(rows)
    precision, recall = precision_recall(data, flagged, harmful, rows, confidence)
    f1 = f1_of(flagged[rows], harmful[rows], w[rows])
    interval = None
    if f1 is not None and resamples.size:
        tp = resamples @ (w * flagged * harmful)[rows]
        denom = resamples @ (w * flagged)[rows] + resamples @ (w * harmful)[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            interval = percentile_interval(np.where(denom > 0, 2 * tp / denom, np.nan), confidence)
    return Measured(precision, recall, f1, interval)


def resamples_for(data: Labelled, rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    return stratified_resamples(data.stratum[rows], n, np.random.default_rng([seed, 4]))


def prevalence(data: Labelled, rows: np.ndarray, confidence: float) -> dict[str, Proportion]:
    """Share of the frame showing each harm (and any harm), from the labelled ``rows``."""
    w = data.weights(rows)
    out = {h: weighted_proportion(data.truth[h][rows], w[rows], confidence) for h in HARMS}
    any_harm = np.any(np.stack([data.truth[h] for h in HARMS]), axis=0) if data.n else np.zeros(0, bool)
    out["any"] = weighted_proportion(any_harm[rows], w[rows], confidence)
    return out


# --- threshold curves and the suggested threshold ---------------------------------------------------


def with_threshold(rule: Rule, cond: Condition, value: float) -> Rule:
    """``rule`` with ``cond``'s threshold set to ``value`` (the other conditions as configured)."""
    new = cond.model_copy(update={"value": float(value)})
    swap = lambda cs: tuple(new if c is cond else c for c in cs)  # noqa: E731
    return rule.model_copy(update={"all": swap(rule.all), "any": swap(rule.any)})


def candidate_thresholds(data: Labelled, cond: Condition) -> np.ndarray:
    """The driving score's values among the labelled rows (each is a cut that changes the flags) and
    the configured threshold, at most MAX_CURVE_POINTS of them (quantiles when more), ascending."""
    values = (
        pc.cast(data.scores.column(cond.score), pa.float64()).to_numpy(zero_copy_only=False) if data.n else []
    )
    values = np.asarray(values, dtype=float)
    unique = np.unique(values[np.isfinite(values)])
    if unique.size > MAX_CURVE_POINTS:
        unique = np.unique(np.quantile(unique, np.linspace(0, 1, MAX_CURVE_POINTS), method="nearest"))
    return np.unique(np.append(unique, float(cond.value)))


def loosest_first(thresholds: np.ndarray, cond: Condition) -> np.ndarray:
    """Order from the threshold that flags most to the one that flags least."""
    return thresholds if cond.op in (">=", ">") else thresholds[::-1]


@dataclass(frozen=True)
class Curve:
    thresholds: np.ndarray  # loosest first
    masks: np.ndarray  # (rows, thresholds): flagged at each threshold


def curve_masks(data: Labelled, rule: Rule, cond: Condition) -> Curve:
    thresholds = loosest_first(candidate_thresholds(data, cond), cond)
    masks = np.stack([data.mask(with_threshold(rule, cond, t)) for t in thresholds], axis=1)
    return Curve(thresholds, masks.reshape(data.n, len(thresholds)))


def curve_points(curve: Curve, harmful: np.ndarray, w: np.ndarray, rows: np.ndarray) -> list[dict]:
    """Weighted precision and recall at each threshold over ``rows``."""
    m = curve.masks[rows]
    y, wr = harmful[rows], w[rows]
    tp, flagged, positives = (wr * y) @ m, wr @ m, float(np.sum(wr * y))
    out = []
    for i, t in enumerate(curve.thresholds):
        out.append({
            "threshold": float(t),
            "precision": float(tp[i] / flagged[i]) if flagged[i] > 0 else None,
            "recall": float(tp[i] / positives) if positives > 0 else None,
            "flagged_rows": int(m[:, i].sum()),
        })  # fmt: skip
    return out


def choose_threshold(curve: Curve, harmful: np.ndarray, counts: np.ndarray, w: np.ndarray, rows: np.ndarray,
                     target: float) -> np.ndarray:  # fmt: skip
    """Index of the loosest threshold whose weighted precision reaches ``target`` (the highest recall),
    for each row of resample ``counts`` (resamples, rows in ``rows``); -1 where none reaches it."""
    m = curve.masks[rows].astype(float)
    cw = counts * w[rows]
    tp = (cw * harmful[rows]) @ m
    flagged = cw @ m
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (flagged > 0) & (tp / np.where(flagged > 0, flagged, 1) >= target - 1e-12)
    first = np.argmax(ok, axis=1)
    return np.where(ok.any(axis=1), first, -1)


def suggest(
    data: Labelled,
    curve: Curve,
    harmful: np.ndarray,
    dev: np.ndarray,
    test: np.ndarray,
    target: float,
    n_boot: int,
    seed: int,
    confidence: float,
) -> dict:
    """The threshold chosen on ``dev`` for ``target`` precision, with the bootstrap range of that choice,
    and its precision and recall measured on ``test``."""
    w_dev = data.weights(dev)
    ones = np.ones((1, int(dev.sum())), dtype=float)
    chosen = int(choose_threshold(curve, harmful, ones, w_dev, dev, target)[0]) if dev.any() else -1
    out: dict = {"target_precision": target, "chosen_on": "dev", "reported_on": "test",
                 "dev_rows": int(dev.sum())}  # fmt: skip
    if chosen < 0:
        out.update(threshold=None, why="no threshold reaches the target precision on the dev labels")
        return out
    boot = choose_threshold(curve, harmful, resamples_for(data, dev, n_boot, seed + 1), w_dev, dev, target)
    picked = np.where(boot >= 0, curve.thresholds[np.maximum(boot, 0)], np.nan)
    interval = percentile_interval(picked, confidence)
    precision, recall = precision_recall(data, curve.masks[:, chosen], harmful, test, confidence)
    out.update(
        threshold=float(curve.thresholds[chosen]),
        threshold_interval=list(interval) if interval else None,
        resamples_without_threshold=float(np.mean(boot < 0)),
        test_precision=precision.as_dict(),
        test_recall=recall.as_dict(),
    )
    return out
