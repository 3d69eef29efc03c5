"""Proportions with intervals: Wilson score intervals from scipy, weighted through Kish's effective
sample size, and a stratified bootstrap for quantities with no closed form (F1, a chosen threshold).

Unweighted (every row of the proportion has the same weight): the Wilson interval of x successes in n
trials, ``scipy.stats.binomtest(x, n).proportion_ci(method="wilson")``. Weighted (rows from strata
drawn at different rates): the estimate is the weighted share p, and the interval is Wilson's for an
effective sample size n_eff = (sum w)^2 / sum w^2 (Kish), taken conservatively: n_eff rounded down,
the lower end from floor(p * n) successes and the upper end from ceil(p * n), so the interval always
holds p. With equal weights this is exactly the unweighted interval.

At zero counts: 0 of 0 has no estimate and the interval [0, 1] (nothing is known); 0 of n has the
estimate 0 and an upper end above 0; n of n the estimate 1 and a lower end below 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

EPS = 1e-9  # float sums of equal weights: 49.999999999 effective rows are 50


@dataclass(frozen=True)
class Proportion:
    estimate: float | None  # None: no rows to estimate from
    low: float
    high: float
    rows: int  # rows the proportion is over (its denominator, unweighted)
    hits: int  # of them, rows that count as successes (unweighted)
    n_eff: float  # Kish's effective sample size (= rows when the weights are equal)

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "rows": self.rows,
                "hits": self.hits, "n_eff": round(self.n_eff, 3)}  # fmt: skip


def wilson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes`` in ``trials`` (scipy); [0, 1] for no trials."""
    if trials == 0:
        return 0.0, 1.0
    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return max(0.0, float(ci.low)), min(1.0, float(ci.high))


def effective_size(weights: np.ndarray) -> float:
    w = np.asarray(weights, dtype=float)
    square = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / square if square > 0 else 0.0


def weighted_proportion(hit: np.ndarray, weights: np.ndarray, confidence: float = 0.95) -> Proportion:
    """The weighted share of ``hit`` among the rows given, with the effective-size Wilson interval."""
    hit = np.asarray(hit, dtype=bool)
    w = np.asarray(weights, dtype=float)
    rows, hits = int(hit.size), int(hit.sum())
    total = float(np.sum(w))
    if rows == 0 or total <= 0:
        return Proportion(None, 0.0, 1.0, rows, hits, 0.0)
    p = float(np.sum(w[hit])) / total
    n_eff = effective_size(w)
    n = max(1, math.floor(n_eff + EPS))
    low = wilson(math.floor(p * n + EPS), n, confidence)[0]
    high = wilson(math.ceil(p * n - EPS), n, confidence)[1]
    return Proportion(p, min(low, p), max(high, p), rows, hits, n_eff)


def stratified_resamples(strata: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap resample counts, (n_resamples, rows): each stratum's rows drawn with replacement as many
    times as it has rows, so every resample keeps the design (and the weights) of the original."""
    counts = np.zeros((n_resamples, len(strata)), dtype=np.int32)
    for name in sorted(set(strata.tolist())):
        idx = np.flatnonzero(strata == name)
        draws = rng.multinomial(len(idx), np.full(len(idx), 1 / len(idx)), size=n_resamples)
        counts[:, idx] = draws
    return counts


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float] | None:
    """The central ``confidence`` range of bootstrap values (NaNs dropped); None when none is left."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if not v.size:
        return None
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))
