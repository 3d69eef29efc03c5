"""make bench-e2e's corpora and arithmetic (the full benchmark itself is not a test: it takes
minutes and its targets are speed targets)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audit.benchmarks import e2e
from audit.benchmarks.e2e_corpus import (
    alt_text_captions,
    clip_retrieval_set,
    first_shards,
    image_set,
    metadata_set,
)
from audit.readers import read_shard
from audit.shards import discover_shards


def test_captions_carry_the_planted_harms_they_count() -> None:
    captions, planted = alt_text_captions(20_000, seed=1)
    assert len(captions) == 20_000 and len(set(captions)) > 10_000
    assert 20 < planted["slur"] < 80 and 150 < planted["sexual"] < 250
    assert (
        sum(" porn" in c or " xxx" in c or " nude" in c or " nsfw" in c for c in captions)
        >= planted["sexual"] * 0.9
    )


def test_corpora_are_read_by_the_audit_readers(tmp_path: Path) -> None:
    cr = clip_retrieval_set(tmp_path / "cr", shards=2, rows_per_shard=300, dim=64)
    specs = discover_shards([str(cr.root)])
    assert [s.format for s in specs] == ["clip_retrieval"] * 2
    data = read_shard(specs[0])
    assert data.table.num_rows == 300 and data.embedding_model == "ViT-B-32"
    assert data.table.column("quarantine_reason").null_count == 300
    assert clip_retrieval_set(tmp_path / "cr", shards=2, rows_per_shard=300, dim=64).rows == 600  # reused
    two = first_shards(cr, tmp_path / "first", 1)
    assert len(discover_shards([str(two)])) == 1
    meta = metadata_set(cr, tmp_path / "meta")
    assert [s.format for s in discover_shards([str(meta.root)])] == ["laion_metadata"] * 2
    img = image_set(tmp_path / "img", images=5, per_shard=3)
    assert img.shards == 2
    t = pq.read_table(sorted(img.root.glob("*.parquet"))[0])
    assert t.num_rows == 3 and min(t.column("width").to_pylist()) >= 100
    assert all(len(b) > 5_000 for b in t.column("jpg").to_pylist())  # real-sized JPEGs, not thumbnails


def test_scorer_bound_sums_seconds_per_row_and_weights_the_expensive_tier() -> None:
    rates = {"a": 1000.0, "b": 100.0}
    assert e2e._scorer_bound(rates, ["a", "b"]) == pytest.approx(1 / (0.001 + 0.01))
    assert e2e._scorer_bound(rates, ["a", "b"], {"b"}, 0.1) == pytest.approx(1 / (0.001 + 0.001))


def test_a_baseline_measured_around_an_audit_averages_seconds_per_row() -> None:
    before = {"rates_per_cpu_s": {"a": 1000.0, "b": 100.0}, "rates_per_wall_s": {"a": 500.0, "b": 100.0},
              "loadavg": [1.0]}  # fmt: skip
    after = {"rates_per_cpu_s": {"a": 500.0, "b": 100.0}, "rates_per_wall_s": {"a": 500.0, "b": 50.0},
             "loadavg": [2.0]}  # fmt: skip
    base = e2e._around(before, after)
    assert base["rates_per_cpu_s"]["a"] == pytest.approx(1 / ((0.001 + 0.002) / 2))
    assert base["rates_per_wall_s"]["b"] == pytest.approx(1 / ((0.01 + 0.02) / 2))
    bound = e2e._bounds(base, ["a", "b"])
    assert bound["cpu_before"] == pytest.approx(1 / 0.011) and bound["cpu_after"] == pytest.approx(1 / 0.012)
    assert bound["cpu"] == pytest.approx(1 / 0.0115)  # between the two, from the mean seconds
    assert bound["loadavg_when_measured"] == [[1.0], [2.0]]


def test_a_rate_is_the_median_pass_not_the_luckiest(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_clock = iter([0.0, 1.0, 1.0, 5.0, 5.0, 7.0])  # passes of 1, 4 and 2 CPU-seconds
    wall_clock = iter([0.0, 2.0, 2.0, 3.0, 3.0, 6.0])  # 2, 1 and 3 seconds
    monkeypatch.setattr(e2e.time, "process_time", lambda: next(cpu_clock))
    monkeypatch.setattr(e2e.time, "perf_counter", lambda: next(wall_clock))
    cpu, wall = e2e._rate(lambda items: None, list(range(100)))
    assert (cpu, wall) == (pytest.approx(50.0), pytest.approx(50.0))  # the best pass: 100 and 100


def test_mode_ratios_and_targets_say_pass_or_fail() -> None:
    result = {
        "rows_in": 10_000, "wall_s": 10.0, "timings_s": {"shards": 8.0},
        "stage_worker_s": {"write": 0.05, "score": 10.0}, "stage_worker_cpu_s": {"write": 0.04},
        "worker_cpu_s": 5.0, "worker_peak_rss_mib": 500.0,
    }  # fmt: skip
    bound = {"cpu": 1000.0, "wall": 800.0}
    m = e2e._mode("full", result, bound, 2, ([1.0], [2.0]))
    assert m["rows_per_s_e2e"] == 1000.0
    assert m["ratio_e2e_vs_workers_x_scorer_bound"] == pytest.approx(1000 / 1600, abs=1e-3)
    assert m["ratio_cpu_time_vs_scorer_bound"] == pytest.approx(2.0)
    assert m["write_rows_per_s_per_core"] == 200_000.0
    doc = {
        "modes": {k: m for k in ("full", "cascade", "cascade_2_shards", "text_only")},
        "warm_up": {"warm_cache": {"warm_up_s": 4.0}},
    }
    got = e2e.targets(doc)
    assert (
        not got["full_ratio_vs_scorer_bound"]["pass"]
        and got["full_ratio_vs_scorer_bound"]["pass_from_cpu_time"]
    )
    assert got["worker_warm_up_s"]["pass"] and got["write_rows_per_s_per_core"]["pass"]
    assert got["peak_worker_rss_ratio_8_vs_2_shards"]["value"] == 1.0
