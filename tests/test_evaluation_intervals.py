"""Intervals of audit.evaluation.intervals and the design-weighted estimators of audit.evaluation.estimates:
behaviour at zero counts, agreement with scipy's Wilson interval, and coverage of the true recall under
a stratified design whose strata are drawn at very different rates."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import binomtest

from audit.evaluation.estimates import Labelled, f1_of, precision_recall, prevalence
from audit.evaluation.intervals import (
    effective_size,
    percentile_interval,
    stratified_resamples,
    weighted_proportion,
    wilson,
)


def test_no_rows_has_no_estimate_and_the_whole_unit_interval() -> None:
    p = weighted_proportion(np.zeros(0, bool), np.zeros(0))
    assert (p.estimate, p.low, p.high, p.rows, p.hits) == (None, 0.0, 1.0, 0, 0)
    assert wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("n", [1, 3, 40, 1000])
def test_none_of_n_is_zero_with_an_upper_end_above_zero(n: int) -> None:
    p = weighted_proportion(np.zeros(n, bool), np.ones(n))
    assert p.estimate == 0.0 and p.low == 0.0
    assert 0.0 < p.high < 1.0
    assert p.high == pytest.approx(binomtest(0, n).proportion_ci(method="wilson").high)


@pytest.mark.parametrize("n", [1, 3, 40, 1000])
def test_n_of_n_is_one_with_a_lower_end_below_one(n: int) -> None:
    p = weighted_proportion(np.ones(n, bool), np.full(n, 7.0))
    assert p.estimate == 1.0 and p.high == 1.0
    assert 0.0 < p.low < 1.0
    assert p.low == pytest.approx(binomtest(n, n).proportion_ci(method="wilson").low)


def test_equal_weights_give_scipys_wilson_interval_exactly() -> None:
    hit = np.array([True] * 13 + [False] * 37)
    for w in (1.0, 2.5, 1 / 3):  # any common weight: 1/3 sums to 49.999... effective rows
        p = weighted_proportion(hit, np.full(50, w), confidence=0.9)
        ci = binomtest(13, 50).proportion_ci(confidence_level=0.9, method="wilson")
        assert p.n_eff == pytest.approx(50)
        assert (p.low, p.high) == pytest.approx((ci.low, ci.high))
        assert p.estimate == pytest.approx(13 / 50)


def test_unequal_weights_shrink_the_effective_size_and_widen_the_interval() -> None:
    hit = np.array([True, True, True, False, False, False])
    even = weighted_proportion(hit, np.ones(6))
    skewed = weighted_proportion(hit, np.array([1, 1, 1, 1, 1, 50.0]))
    assert effective_size(np.array([1, 1, 1, 1, 1, 50.0])) < 2
    assert skewed.estimate == pytest.approx(3 / 55)
    assert skewed.low <= skewed.estimate <= skewed.high
    assert skewed.high - skewed.low > even.high - even.low


def test_bootstrap_resamples_keep_each_stratum_size() -> None:
    strata = np.array(["a"] * 5 + ["b"] * 2 + ["c"])
    counts = stratified_resamples(strata, 200, np.random.default_rng(0))
    assert counts.shape == (200, 8)
    assert (counts[:, :5].sum(axis=1) == 5).all() and (counts[:, 5:7].sum(axis=1) == 2).all()
    assert (counts[:, 7] == 1).all()
    assert percentile_interval(np.array([np.nan, np.nan])) is None


def _design(rng: np.random.Generator) -> tuple[Labelled, np.ndarray, dict]:
    """A frame of 20,000 rows in three strata (flagged; unflagged near misses; unflagged far), a rare
    harm that the flagger half misses, and a draw of 60 / 60 / 120 rows: weights from 1.5 to 140."""
    sizes = {"flagged": 90, "near": 2_900, "far": 17_010}
    harmful_share = {"flagged": 0.7, "near": 0.02, "far": 0.003}  # true recall ~ 63 / (63 + 58 + 51)
    drawn = {"flagged": 60, "near": 60, "far": 120}
    stratum, rows, harmful, flagged = [], [], [], []
    truth = {"tp": 0, "flagged": 0, "harmful": 0}
    for name, size in sizes.items():
        y = np.zeros(size, bool)
        y[: round(harmful_share[name] * size)] = True
        truth["harmful"] += int(y.sum())
        if name == "flagged":
            truth["tp"] += int(y.sum())
            truth["flagged"] += size
        pick = rng.choice(size, drawn[name], replace=False)
        stratum += [name] * drawn[name]
        rows += [size] * drawn[name]
        harmful += y[pick].tolist()
        flagged += [name == "flagged"] * drawn[name]
    n = len(stratum)
    data = Labelled(
        row_id=np.arange(n).astype(str).astype(object),
        stratum=np.asarray(stratum, dtype=object),
        stratum_rows=np.asarray(rows, dtype=float),
        split=np.full(n, "test", dtype=object),
        truth={"hate": np.asarray(harmful, bool), **{h: np.zeros(n, bool) for h in
                                                      ("sexual", "violence", "harassment", "pii")}},
        scores=pa.table({"row_id": np.arange(n).astype(str)}),
    )  # fmt: skip
    return data, np.asarray(flagged, bool), truth


def test_weighted_estimates_cover_the_truth_under_unequal_inclusion() -> None:
    """Over 200 seeded draws of a design whose weights run from 1.5 to 140 and whose rare harm hides
    mostly in the big unflagged strata: the 95% intervals hold the frame's true precision, prevalence
    and recall at least 90% of the time (recall's because its lower end allows for harm in strata where
    none was labelled: without that the Wilson interval alone holds it only ~80% of the time), and the
    weighted estimates are unbiased where ignoring the weights overrates the flagger."""
    covered = {"precision": 0, "recall": 0, "prevalence": 0}
    recalls, naive = [], []
    for seed in range(200):
        data, flagged, truth = _design(np.random.default_rng(seed))
        rows = np.ones(data.n, bool)
        w = data.weights(rows)
        assert w.sum() == pytest.approx(20_000)  # the draw stands for the whole frame
        p, r = precision_recall(data, flagged, data.truth["hate"], rows, 0.95)
        prev = prevalence(data, rows, 0.95)["hate"]
        true_p, true_r = truth["tp"] / truth["flagged"], truth["tp"] / truth["harmful"]
        covered["precision"] += p.low <= true_p <= p.high
        covered["recall"] += r.low <= true_r <= r.high
        covered["prevalence"] += prev.low <= truth["harmful"] / 20_000 <= prev.high
        assert r.low <= r.estimate <= r.high
        recalls.append(r.estimate)
        y = data.truth["hate"]
        naive.append(float((flagged & y).sum() / y.sum()))
        assert f1_of(flagged, y, w) == pytest.approx(2 * p.estimate * r.estimate / (p.estimate + r.estimate))
    assert min(covered.values()) >= 180, covered
    true_r = truth["tp"] / truth["harmful"]
    assert np.mean(naive) > true_r + 0.3  # ignoring the weights overrates the flagger
    assert np.mean(recalls) < np.mean(naive) - 0.2
