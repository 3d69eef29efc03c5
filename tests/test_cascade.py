"""Cascade scoring: cheap tier everywhere, expensive tier on candidates and the audit sample, and
the estimate of what it missed, on real audits of the sample corpus."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.cascade import SKIPPED, Plan, audit_sample, estimates, expensive_rules, wilson
from audit.config import CascadeSettings
from audit.pipelines.audit_run import run_audit
from audit.rules import load_rules

pytestmark = pytest.mark.slow
EXPENSIVE_SCORES = ("text_hate_prob", "text_sonar_offensive_prob", "image_nsfw_prob")


def _shards(sample_dir: Path) -> list[str]:
    return [str(sample_dir / "parquet"), str(sample_dir / "webdataset"), str(sample_dir / "laion_metadata")]


def _flags(run: Path) -> dict[str, set[str]]:
    t = pq.read_table(run / "flags.parquet")
    return {
        r: set(x)
        for r, x in zip(t.column("row_id").to_pylist(), t.column("reasons").to_pylist(), strict=True)
    }


def _scores(run: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((run / "scores").glob("*.parquet")))


def _cascade_config(make_config, sample_dir: Path, tmp_path: Path, *, fraction: float):
    overrides = {"neighbours.enabled": False, "cascade.enabled": True, "cascade.audit_fraction": fraction}
    return make_config(shards=_shards(sample_dir), out=str(tmp_path / "run"), **overrides)


@pytest.fixture(scope="module")
def full_run(sample_dir: Path, make_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    run_audit(make_config(shards=_shards(sample_dir), out=str(out), **{"neighbours.enabled": False}))
    return out


def test_with_every_row_in_the_audit_sample_the_cascade_gives_the_full_runs_flags(
    sample_dir: Path, make_config, tmp_path: Path, full_run: Path
) -> None:
    cfg = _cascade_config(make_config, sample_dir, tmp_path, fraction=1.0)
    summary = run_audit(cfg)
    assert _flags(tmp_path / "run") == _flags(full_run)
    status = set(_scores(tmp_path / "run").column("cascade_status").to_pylist())
    assert status <= {"candidate", "audit_sample"}
    assert summary.cascade is not None and summary.cascade["rows"]["skipped_by_cascade"] == 0
    for est in summary.cascade["rules"].values():
        assert est["estimated_missed_flags"] == 0.0
        assert est["estimated_missed_flags_ci95"] == [0.0, 0.0]


def test_rows_the_expensive_tier_skipped_say_so_and_hold_no_expensive_score(
    sample_dir: Path, make_config, tmp_path: Path, full_run: Path
) -> None:
    cfg = _cascade_config(make_config, sample_dir, tmp_path, fraction=0.0)
    summary = run_audit(cfg)
    scores = _scores(tmp_path / "run")
    status = np.asarray(scores.column("cascade_status").to_pylist(), dtype=object)
    skipped = status == SKIPPED
    assert skipped.any() and (status == "candidate").any()
    for name in EXPENSIVE_SCORES:
        values = np.asarray(scores.column(name).to_pylist(), dtype=object)
        assert all(v is None for v in values[skipped]), name  # never a clean-looking value
    # every row with a cheap signal was a candidate: the offensive and hateful planted captions
    offensive = np.asarray(scores.column("text_offensive_prob").to_pylist(), dtype=float) >= 0.3
    assert (status[offensive] == "candidate").all()
    hate = np.asarray(scores.column("text_hate_prob").to_pylist(), dtype=object)
    assert any(v is not None for v in hate[status == "candidate"])
    # flags found are a subset of the full run's, each saying the row's cascade status
    flags = pq.read_table(tmp_path / "run" / "flags.parquet")
    full = _flags(full_run)
    for row, reasons in _flags(tmp_path / "run").items():
        assert reasons <= full[row]
    assert set(flags.column("cascade_status").to_pylist()) <= {"candidate", SKIPPED}
    # caption languages: detected where the expensive tier ran and on every flagged row, as in the
    # full run; a skipped row no rule fires on is not sent to fastText
    full_scores = _scores(full_run)
    full_lang = dict(
        zip(
            full_scores.column("row_id").to_pylist(),
            full_scores.column("caption_language").to_pylist(),
            strict=True,
        )
    )
    flagged = set(flags.column("row_id").to_pylist())
    langs = scores.column("caption_language").to_pylist()
    checked = {"detected": 0, "not": 0}
    for row, st, lang in zip(scores.column("row_id").to_pylist(), status, langs, strict=True):
        if st == "candidate" or row in flagged:
            assert lang == full_lang[row], row
            checked["detected"] += lang is not None
        elif st == SKIPPED:
            assert lang is None, row
            checked["not"] += full_lang[row] is not None
    assert checked["detected"] and checked["not"]
    assert any(row in flagged for row, st in zip(scores.column("row_id").to_pylist(), status, strict=True)
               if st == SKIPPED)  # fmt: skip
    assert any("cascade scoring was on" in w for w in summary.warnings)
    assert summary.cascade["sampled_rows"] == 0
    assert summary.cascade["rules"]["hateful-caption"]["miss_rate_ci95"] == [0.0, 1.0]  # no sample: unknown
    # the report says the cascade was on, what it skipped, and the estimate per rule
    from audit.report import write_report

    html = Path(write_report(str(tmp_path / "run"))[0]).read_text()
    assert "Cascade scoring was on" in html and 'id="cascade-misses"' in html
    assert "<code>hateful-caption</code>" in html and "cascade scoring was on: expensive-tier" in html
    assert "<code>not-detected</code>" in html
    problems = scores.column("caption_problem").to_pylist()
    undetected = sum(
        st == SKIPPED and lang is None and p is None
        for st, lang, p in zip(status, langs, problems, strict=True)
    )
    assert summary.languages["not-detected"].rows == undetected > 0
    counts = json.loads((tmp_path / "run" / "report" / "counts.json").read_text())
    assert counts["cascade"]["rows"] == summary.cascade["rows"]


def test_the_audit_sample_is_seeded_uniform_and_independent_of_batching() -> None:
    rows = np.arange(200_000)
    sample = audit_sample("shard-a", rows, seed=0, fraction=0.01)
    assert 0.009 < sample.mean() < 0.011
    in_two = np.concatenate(
        [audit_sample("shard-a", rows[:777], 0, 0.01), audit_sample("shard-a", rows[777:], 0, 0.01)]
    )
    assert (in_two == sample).all()
    assert not (audit_sample("shard-b", rows, 0, 0.01) == sample).all()
    assert not (audit_sample("shard-a", rows, 1, 0.01) == sample).all()
    assert not audit_sample("shard-a", rows, 0, 0.0).any()


def test_wilson_interval_matches_its_closed_form() -> None:
    k, n, z = 3, 100, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(centre - half, abs=1e-9) and hi == pytest.approx(centre + half, abs=1e-9)
    assert wilson(0, 0) == (0.0, 1.0)


def test_estimates_scale_the_sample_miss_rate_to_the_skipped_rows() -> None:
    counts = {
        "rows": {"candidate": 100, "audit_sample": 50, SKIPPED: 9_950},
        "sampled_rows": 60,
        "sampled_non_candidates": 50,
        "rules": {"hateful-caption": {"flags_in_sample": 3, "missed_in_sample": 1, "flags_found": 40}},
    }
    est = estimates(counts, CascadeSettings(enabled=True))["rules"]["hateful-caption"]
    assert est["miss_rate_per_skipped_row"] == pytest.approx(1 / 50)
    assert est["estimated_missed_flags"] == pytest.approx(9_950 / 50)
    lo, hi = wilson(1, 50)
    assert est["estimated_missed_flags_ci95"] == pytest.approx([lo * 9_950, hi * 9_950])
    assert est["estimated_share_of_flags_missed"] == pytest.approx(199 / 239)


def test_plan_puts_the_tiers_columns_back_on_its_rows_only() -> None:
    table = pa.table({"x": [1, 2, 3, 4], "tag": ["a", "b", "c", "d"]})
    plan = Plan(np.array([1, 3]))

    def tier(t: pa.Table, images: dict) -> pa.Table:
        assert t.column("x").to_pylist() == [2, 4]
        return t.append_column("new", pa.array([20.0, 40.0])).set_column(1, "tag", pa.array(["B", "D"]))

    out = plan.run(table, {}, tier)
    assert out.column("new").to_pylist() == [None, 20.0, None, 40.0]
    assert out.column("tag").to_pylist() == ["a", "B", "c", "D"]


def test_expensive_rules_are_the_ones_reading_an_expensive_score() -> None:
    ids = {r.id for r in expensive_rules(load_rules("default"))}
    assert {"hateful-caption", "nsfw-image", "offensive-caption"} <= ids
    assert "slur-in-caption" not in ids and "pii-in-caption" not in ids
