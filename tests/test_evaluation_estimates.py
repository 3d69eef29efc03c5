"""`mmaudit evaluate report` on a real audit of the sample corpus whose sample is labelled from its planted
cases (PLANTED.json) through the real label store: the estimates recover the known precision, recall and
prevalence within their intervals, intervals behave at zero counts, and evaluation.json and the report
carry curves, suggested thresholds, agreement, seed stability and the held-out protocol."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audit.config import DEFAULT_RULE_CATEGORIES
from audit.evaluation import open_eval_run
from audit.evaluation.planted import PLANTED_HARMS, planted_truth
from audit.render_policy import never_render

pytestmark = pytest.mark.slow


def mmaudit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def evaluated(sample_run: Path, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Sample drawn (unflagged strata drawn from, not taken whole: weights above 1), labelled from the
    planted cases by two reviewers on the double-label rows, evaluated, and reported, all by the CLI."""
    run = Path(shutil.copytree(sample_run, tmp_path_factory.mktemp("eval-estimates") / "run"))
    steps = {
        "sample": mmaudit(
            "evaluate",
            "sample",
            str(run),
            "--set",
            "evaluation.unflagged_per_stratum=4",
            "--set",
            "evaluation.unflagged_far=8",
        ),
        "label": mmaudit(
            "evaluate", "label-planted", str(run), "--planted", str(sample_dir / "PLANTED.json")
        ),
        "report": mmaudit("evaluate", "report", str(run)),
        "html": mmaudit("report", "--run", str(run)),
    }
    for name, done in steps.items():
        assert done.returncode == 0, (name, done.stderr[-3000:])
    doc = json.loads((run / "evaluation" / "evaluation.json").read_text())
    return {
        "run": run,
        "doc": doc,
        "steps": steps,
        "planted": json.loads((sample_dir / "PLANTED.json").read_text()),
    }


def _truth(evaluated: dict) -> tuple[dict[str, tuple], dict[str, list[str]], set[str]]:
    """Planted categories of every frame row, the rules fired per flagged row, the frame's row ids."""
    run = evaluated["run"]
    truth = planted_truth(open_eval_run(str(run)), evaluated["planted"])
    flags = pq.read_table(run / "flags.parquet").to_pylist()
    never = {f["row_id"] for f in flags if never_render(f)}
    frame = set(truth) - never
    return {r: truth[r] for r in frame}, {f["row_id"]: f["rules"] for f in flags}, frame


def _share(hits: int, rows: int) -> float | None:
    return hits / rows if rows else None


def test_estimates_recover_the_planted_precision_and_recall_within_their_intervals(evaluated) -> None:
    truth, fired, frame = _truth(evaluated)
    doc = evaluated["doc"]
    assert {r["rule"] for r in doc["rules"]} >= {
        "offensive-caption",
        "hateful-caption",
        "sexual-terms",
        "violent-terms",
        "pii-in-caption",
        "nsfw-image",
    }
    for r in doc["rules"]:
        harm = r["category"]
        assert harm == DEFAULT_RULE_CATEGORIES[r["reason"]]
        flagged = {row for row in frame if r["rule"] in fired.get(row, [])}
        harmful = {row for row in frame if harm in truth[row]}
        true_p = _share(len(flagged & harmful), len(flagged))
        true_r = _share(len(flagged & harmful), len(harmful))
        for what, true in (("precision", true_p), ("recall", true_r)):
            est = r["test"][what]
            assert (
                est["low"] <= (est["estimate"] if est["estimate"] is not None else est["low"]) <= est["high"]
            )
            if true is None:  # 0 of 0 in the whole frame: nothing to estimate
                assert est["estimate"] is None and (est["low"], est["high"]) == (0.0, 1.0), (r["rule"], what)
            else:
                assert est["estimate"] is not None, (r["rule"], what)
                assert est["low"] <= true <= est["high"], (r["rule"], what, true, est)
    # the planted truth has rules of every kind: perfect, imperfect, and ones that find nothing
    by_rule = {r["rule"]: r["test"] for r in doc["rules"]}
    assert by_rule["sexual-terms"]["recall"]["estimate"] == 1.0
    assert by_rule["nsfw-image"]["recall"]["estimate"] == 0.0  # the planted sexual caption's image is a brick
    assert by_rule["nsfw-image"]["precision"]["estimate"] is None  # it flags nothing: 0 of 0


def test_intervals_at_zero_counts_on_real_rules(evaluated) -> None:
    by_rule = {r["rule"]: r["test"] for r in evaluated["doc"]["rules"]}
    none_of_none = by_rule["nsfw-image"]["precision"]
    assert (none_of_none["estimate"], none_of_none["low"], none_of_none["high"], none_of_none["rows"]) == (
        None,
        0.0,
        1.0,
        0,
    )
    none_of_n = by_rule["nsfw-image"]["recall"]
    assert none_of_n["estimate"] == 0.0 and none_of_n["low"] == 0.0 and 0 < none_of_n["high"] < 1
    all_of_n = by_rule["pii-in-caption"]["precision"]
    assert all_of_n["estimate"] == 1.0 and all_of_n["high"] == 1.0 and 0 < all_of_n["low"] < 1
    assert by_rule["nsfw-image"]["f1"]["estimate"] == 0.0


def test_prevalence_is_recovered_within_its_interval(evaluated) -> None:
    truth, _, frame = _truth(evaluated)
    prevalence = {p["category"]: p for p in evaluated["doc"]["prevalence"]}
    assert set(prevalence) == {"sexual", "violence", "hate", "harassment", "pii", "any"}
    for harm, p in prevalence.items():
        rows = [r for r in frame if (harm in truth[r] if harm != "any" else truth[r] != ("benign",))]
        true = len(rows) / len(frame)
        assert p["low"] <= true <= p["high"], (harm, true, p)
    harms = {h for hs in PLANTED_HARMS.values() for h in hs}
    assert all(prevalence[h]["estimate"] > 0 for h in harms)


def test_weights_make_the_test_labels_stand_for_the_whole_frame(evaluated) -> None:
    doc = evaluated["doc"]
    sample = pq.read_table(evaluated["run"] / "evaluation" / "sample.parquet").to_pylist()
    assert any(r["weight"] > 1 for r in sample)  # some strata were drawn from
    assert doc["coverage"]["rows_represented"] == doc["design"]["frame"]["rows"]
    assert doc["coverage"]["strata_without_test_labels"] == []
    assert doc["labels"]["usable_rows"] == doc["protocol"]["dev_rows"] + doc["protocol"]["test_rows"]
    assert doc["labels"]["unlabelled_rows"] == 0 and doc["labels"]["labels_outside_sample"] == 0


def test_held_out_protocol_says_which_labels_chose_and_which_reported(evaluated) -> None:
    doc = evaluated["doc"]
    assert "suggested threshold" in doc["protocol"]["dev"] and "every estimate" in doc["protocol"]["test"]
    suggested = {r["rule"]: r["suggested"] for r in doc["rules"]}
    offensive = suggested["offensive-caption"]  # the only rule with harmful rows on both sides of the split
    assert (offensive["chosen_on"], offensive["reported_on"]) == ("dev", "test")
    assert offensive["threshold"] is not None and offensive["test_precision"]["estimate"] is not None
    low, high = offensive["threshold_interval"]
    assert low <= offensive["threshold"] <= high
    assert all(s["threshold"] is None and s["why"] for s in suggested.values() if s.get("threshold") is None)


def test_curves_span_the_configured_threshold_on_both_splits(evaluated) -> None:
    doc = evaluated["doc"]
    curves = {c["rule"]: c for c in doc["curves"]}
    assert set(curves) == {r["rule"] for r in doc["rules"] if r["curve_condition"]}
    for c in curves.values():
        for split in ("dev", "test"):
            thresholds = [p["threshold"] for p in c[split]]
            assert c["configured"] in thresholds  # (alone when no labelled row has the score)
            assert len(thresholds) >= 2 or c["score"] == "source_punsafe"  # null in img2dataset shards
            flagged = [p["flagged_rows"] for p in c[split]]
            assert flagged == sorted(flagged, reverse=True)  # loosest first: fewer rows flag as it rises
    assert len(curves["offensive-caption"]["test"]) >= 3


def test_stability_over_at_least_five_seeds_and_kappa(evaluated) -> None:
    doc = evaluated["doc"]
    seeds = doc["stability"]["seeds"]
    assert len(seeds) >= 5 and len(set(seeds)) == len(seeds)
    for r in doc["rules"]:
        for what in ("precision", "recall", "f1", "suggested_threshold"):
            st = r["stability"][what]
            assert len(st["values"]) == len(seeds)
            if st["seeds_with_value"]:
                assert st["min"] <= st["mean"] <= st["max"] and st["std"] >= 0
    agreement = doc["agreement"]
    assert agreement["rows"] == doc["labels"]["double_labelled_rows"] > 0
    assert agreement["label"]["agreement"] == 1.0  # both planted reviewers give the same labels
    assert {c["kappa"] for c in agreement["by_category"]} <= {1.0, None}


def test_cli_prints_each_rule_and_the_report_has_the_section_with_plots(evaluated) -> None:
    run, steps = evaluated["run"], evaluated["steps"]
    out = steps["report"].stdout
    assert "thresholds chosen on dev" in out and str(run / "evaluation" / "evaluation.json") in out
    assert any(line.split()[0] == "offensive-caption" for line in out.splitlines() if line.startswith("  "))
    for html in (run / "report" / "report.html", run / "evaluation" / "evaluation.html"):
        text = html.read_text()
        for anchor in (
            'id="sec-evaluation"',
            'id="evaluation-rules"',
            'id="evaluation-thresholds"',
            'id="evaluation-prevalence"',
            'id="evaluation-kappa"',
            'id="chart-evaluation-estimates"',
            'id="chart-evaluation-curve-offensive-caption"',
            'id="chart-evaluation-stability"',
        ):
            assert anchor in text, (html.name, anchor)
        assert "could not be drawn" not in text
        assert "Held-out protocol" in text
    figures = json.loads((run / "report" / "figures.json").read_text())
    assert figures["evaluation"]["shown"] is True
    assert "chart-evaluation-estimates" in figures["charts"]["evaluation"]


def test_a_report_before_labelling_has_empty_estimates_and_says_so(evaluated, tmp_path: Path) -> None:
    run = Path(shutil.copytree(evaluated["run"], tmp_path / "run"))
    (run / "evaluation" / "labels.db").unlink()
    done = mmaudit("evaluate", "report", str(run))
    assert done.returncode == 0 and "no usable label yet" in done.stderr
    doc = json.loads((run / "evaluation" / "evaluation.json").read_text())
    assert all(r["test"]["precision"]["estimate"] is None for r in doc["rules"])
    assert doc["coverage"]["rows_represented"] == 0
    html = mmaudit("report", "--run", str(run))
    assert html.returncode == 0


def test_a_design_setting_at_report_time_must_match_the_sample(evaluated) -> None:
    done = mmaudit("evaluate", "report", str(evaluated["run"]), "--set", "evaluation.seed=3")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "was drawn with seed=0" in lines[0]
