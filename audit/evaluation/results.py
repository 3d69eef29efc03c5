"""`mmaudit evaluate report`: every estimate of RUN/evaluation/evaluation.json, under a held-out protocol.

The sample's dev/test split (drawn with it, recorded in sample.parquet) keeps apart the labels that
choose thresholds (dev: the suggested threshold per rule) and the labels that report (test: every
precision, recall, F1, prevalence and the suggested threshold's own precision and recall). Stability
re-draws that split with ``stability_seeds`` other seeds (the same stratified procedure) and reports
the spread of each estimate across them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audit.config import EvaluationSettings
from audit.evaluation.agreement import agreement
from audit.evaluation.design import split_within_strata
from audit.evaluation.estimates import (
    Curve,
    Labelled,
    choose_threshold,
    curve_masks,
    curve_points,
    f1_of,
    load_labelled,
    measure,
    precision_recall,
    prevalence,
    resamples_for,
    suggest,
)
from audit.evaluation.files import EvalRun
from audit.evaluation.labels import HARMS, latest_labels
from audit.evaluation.rules_measured import RuleInfo, describe, rule_infos
from audit.finalize import now
from audit.rules import Rule

RESULTS_VERSION = "1"
PROTOCOL = {
    "dev": "chooses the suggested threshold of each rule (its bootstrap range too)",
    "test": "reports every estimate: precision, recall, F1, prevalence, and the suggested threshold's "
    "precision and recall",
    "stability": "the dev/test split re-drawn with other seeds; each estimate's spread across them",
}
METHODS = {
    "weights": "Horvitz-Thompson: a labelled row of stratum h weighs N_h / m_h (frame rows of the stratum "
    "over its labelled rows in the split)",
    "intervals": "Wilson score interval (scipy.stats.binomtest(...).proportion_ci(method='wilson')) for "
    "Kish's effective sample size, rounded outward (conservative); exact Wilson when weights are equal",
    "prevalence": "weighted share of the frame labelled with the harm, effective-size Wilson interval",
    "f1": "weighted 2TP / (flagged + harmful), percentile interval of a stratified bootstrap",
    "suggested_threshold": "the loosest threshold of the rule's first numeric condition whose weighted dev "
    "precision reaches the target; its interval is the percentile range of that choice over a stratified "
    "bootstrap of the dev labels",
    "truth": "the first labeller's latest label of each row; unsure rows are left out",
    "zero_counts": "0 of 0: no estimate, interval [0, 1]; 0 of n: estimate 0, upper end above 0; n of n: "
    "estimate 1, lower end below 1",
}


@dataclass
class _Measured:
    info: RuleInfo
    flagged: np.ndarray
    harmful: np.ndarray
    curve: Curve | None


def evaluate(run: EvalRun, settings: EvaluationSettings) -> dict:
    """Every estimate as a JSON-ready dict (written by write_evaluation)."""
    design = run.design()
    data = load_labelled(run)
    infos = rule_infos(run.rules(), run.summary, settings.categories)
    dev, test = data.split == "dev", data.split == "test"
    conf = settings.confidence
    resamples = resamples_for(data, test, settings.bootstrap, settings.seed)
    measured = [
        _Measured(
            i,
            data.mask(i.rule),
            data.truth[i.category],
            curve_masks(data, i.rule, i.driving) if i.driving is not None and data.n else None,
        )
        for i in infos
        if i.category is not None
    ]
    rules_out, conditions_out, curves_out = [], [], []
    for m in measured:
        rule, cond = m.info.rule, m.info.driving
        entry = {
            "rule": rule.id,
            "reason": rule.reason,
            "severity": rule.severity,
            "category": m.info.category,
            "conditions": [describe(c) for c in rule.conditions],
            "curve_condition": describe(cond) if cond is not None else None,
            "test": measure(data, m.flagged, m.harmful, test, resamples, conf).as_dict(),
        }
        if m.curve is not None and cond is not None:
            w_dev, w_test = data.weights(dev), data.weights(test)
            curves_out.append(
                {
                    "rule": rule.id,
                    "category": m.info.category,
                    "score": cond.score,
                    "op": cond.op,
                    "configured": float(cond.value),
                    "dev": curve_points(m.curve, m.harmful, w_dev, dev),
                    "test": curve_points(m.curve, m.harmful, w_test, test),
                }
            )
            entry["suggested"] = suggest(
                data,
                m.curve,
                m.harmful,
                dev,
                test,
                settings.target_precision,
                settings.bootstrap,
                settings.seed,
                conf,
            )
            curves_out[-1]["suggested"] = entry["suggested"].get("threshold")
        else:
            why = "the rule has no numeric condition to vary" if cond is None else "no usable labels yet"
            entry["suggested"] = {"threshold": None, "why": why}
        rules_out.append(entry)
        for k, c in enumerate(rule.conditions):  # each scorer threshold alone, against the rule's harm
            alone = Rule(id=f"{rule.id}#{k}", reason=rule.reason, severity=rule.severity, all=(c,))
            conditions_out.append(
                {
                    "rule": rule.id,
                    "condition": describe(c),
                    "score": c.score,
                    "op": c.op,
                    "threshold": c.value,
                    "category": m.info.category,
                    "test": measure(data, data.mask(alone), m.harmful, test, resamples, conf).as_dict(),
                }
            )
    stability = _stability(data, measured, settings)
    for entry in rules_out:
        entry["stability"] = stability["rules"].get(entry["rule"], {})
    return {
        "schema": "mmaudit.evaluation",
        "version": RESULTS_VERSION,
        "generated_at": now(),
        "run_name": run.summary.run_name,
        "confidence": conf,
        "target_precision": settings.target_precision,
        "protocol": {
            **PROTOCOL,
            "split_seed": settings.seed,
            "dev_fraction": settings.dev_fraction,
            "dev_rows": int(dev.sum()),
            "test_rows": int(test.sum()),
        },
        "methods": METHODS,
        "design": {k: design[k] for k in ("drawn_at", "settings", "frame", "sampled_rows", "rule_priority")},
        "strata": design["strata"],
        "coverage": _coverage(data, design, test),
        "labels": data.counts,
        "rules": rules_out,
        "conditions": conditions_out,
        "not_measured": [
            {"rule": i.id, "reason": i.rule.reason, "why": i.not_measured}
            for i in infos
            if i.category is None
        ],
        "prevalence": [{"category": h, **p.as_dict()} for h, p in prevalence(data, test, conf).items()],
        "curves": curves_out,
        "agreement": agreement(latest_labels(run), run.sample().column("row_id")),
        "stability": {"seeds": stability["seeds"], "prevalence": stability["prevalence"]},
    }


def _coverage(data: Labelled, design: dict, test: np.ndarray) -> dict:
    """Which strata the test labels represent: a stratum without one is outside every estimate."""
    labelled = set(data.stratum[test].tolist())
    missing = [
        {"stratum": s["stratum"], "rows": s["rows"]} for s in design["strata"] if s["stratum"] not in labelled
    ]
    frame = int(design["frame"]["rows"])
    outside = sum(m["rows"] for m in missing)
    return {"frame_rows": frame, "rows_represented": frame - outside, "strata_without_test_labels": missing}


def _spread(values: list[float | None]) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    stats = {"values": values, "seeds_with_value": int(v.size)}
    if v.size:
        stats.update(
            mean=float(v.mean()),
            std=float(v.std(ddof=1)) if v.size > 1 else 0.0,
            min=float(v.min()),
            max=float(v.max()),
        )
    return stats


def _stability(data: Labelled, measured: list[_Measured], settings: EvaluationSettings) -> dict:
    seeds = [settings.seed + 1 + k for k in range(settings.stability_seeds)]
    per_rule: dict[str, dict[str, list]] = {m.info.id: {} for m in measured}
    per_harm: dict[str, list] = {h: [] for h in (*HARMS, "any")}
    conf = settings.confidence
    for seed in seeds:
        split = split_within_strata(data.stratum, settings.dev_fraction, np.random.default_rng([seed, 1]))
        dev, test = split == "dev", split == "test"
        w_dev, w_test = data.weights(dev), data.weights(test)
        for m in measured:
            p, r = precision_recall(data, m.flagged, m.harmful, test, conf)
            got = per_rule[m.info.id]
            got.setdefault("precision", []).append(p.estimate)
            got.setdefault("recall", []).append(r.estimate)
            got.setdefault("f1", []).append(f1_of(m.flagged[test], m.harmful[test], w_test[test]))
            threshold = None
            if m.curve is not None and dev.any():
                ones = np.ones((1, int(dev.sum())))
                idx = int(
                    choose_threshold(m.curve, m.harmful, ones, w_dev, dev, settings.target_precision)[0]
                )
                threshold = float(m.curve.thresholds[idx]) if idx >= 0 else None
            got.setdefault("suggested_threshold", []).append(threshold)
        for h, prop in prevalence(data, test, conf).items():
            per_harm[h].append(prop.estimate)
    return {
        "seeds": seeds,
        "rules": {rule: {k: _spread(v) for k, v in got.items()} for rule, got in per_rule.items()},
        "prevalence": {h: _spread(v) for h, v in per_harm.items()},
    }


def write_evaluation(run: EvalRun, settings: EvaluationSettings) -> tuple[dict, list[str]]:
    """Compute the estimates and write evaluation.json and evaluation.html; returns them and the paths."""
    from audit.evaluation.section import standalone_html

    doc = evaluate(run, settings)
    run.folder.write_json(run.results_path, doc)
    run.folder.write_bytes(run.html_path, standalone_html(doc).encode("utf-8"))
    return doc, [run.results_path, run.html_path]
