"""`mmaudit evaluate sample` on a real audit of the sample corpus: the strata partition the frame, the
weights are inverse inclusion probabilities, never-render rows are left out and listed, the split and
double-label marks are drawn within the design, and a draw is reproducible and never silently replaced."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audit.evaluation import open_eval_run
from audit.evaluation.files import EXCLUDED_SCHEMA, SAMPLE_SCHEMA
from audit.render_policy import never_render

pytestmark = pytest.mark.slow


def mmaudit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def drawn(
    sample_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess]:
    """A private copy of the shared sample run with a sample drawn by the CLI (small unflagged strata,
    so that some are drawn from, not taken whole)."""
    run = Path(shutil.copytree(sample_run, tmp_path_factory.mktemp("eval-sample") / "run"))
    done = mmaudit("evaluate", "sample", str(run), "--set", "evaluation.unflagged_per_stratum=3",
                   "--set", "evaluation.unflagged_far=6")  # fmt: skip
    return run, done


def _frame(run: Path) -> tuple[set[str], dict[str, list[str]], set[str]]:
    """Scored row ids, the rules fired per flagged row, and the never-render row ids (from the run)."""
    scored = {
        r
        for f in (run / "scores").glob("*.parquet")
        for r in pq.read_table(f, columns=["row_id"])["row_id"].to_pylist()
    }
    flags = pq.read_table(run / "flags.parquet").to_pylist()
    fired = {f["row_id"]: f["rules"] for f in flags}
    never = {f["row_id"] for f in flags if never_render(f)} & scored  # (a quarantined one is not scored)
    return scored, fired, never


def test_cli_writes_the_sample_its_design_and_the_excluded_rows(drawn) -> None:
    run, done = drawn
    assert done.returncode == 0, done.stderr
    out = run / "evaluation"
    assert str(out / "sample.parquet") in done.stdout.splitlines()
    assert done.stdout.startswith("written: ")
    assert pq.read_schema(out / "sample.parquet").names == SAMPLE_SCHEMA.names
    assert pq.read_schema(out / "excluded.parquet").names == EXCLUDED_SCHEMA.names
    design = json.loads((out / "design.json").read_text())
    assert design["settings"]["unflagged_per_stratum"] == 3 and design["settings"]["seed"] == 0
    assert "Labelling page" in done.stderr


def test_strata_partition_the_frame_and_weights_are_inverse_inclusion_probabilities(drawn) -> None:
    run, _ = drawn
    scored, fired, never = _frame(run)
    design = json.loads((run / "evaluation" / "design.json").read_text())
    sample = pq.read_table(run / "evaluation" / "sample.parquet").to_pylist()
    frame = scored - never
    assert design["frame"]["rows"] == len(frame) and design["frame"]["rows_never_render_excluded"] == len(
        never
    )
    strata = {s["stratum"]: s for s in design["strata"]}
    assert sum(s["rows"] for s in strata.values()) == len(frame)  # every frame row in one stratum
    drawn_per = Counter(r["stratum"] for r in sample)
    for name, s in strata.items():
        wanted = 40 if name.startswith("flagged:") else 6 if name == "unflagged:far" else 3
        assert s["sampled"] == drawn_per[name] == min(wanted, s["rows"]) >= 1
    assert any(s["sampled"] < s["rows"] for s in strata.values())  # some strata were drawn from
    for r in sample:
        s = strata[r["stratum"]]
        assert (r["stratum_rows"], r["stratum_sampled"]) == (s["rows"], s["sampled"])
        assert r["weight"] == pytest.approx(s["rows"] / s["sampled"])
        assert r["row_id"] in frame
        if r["stratum"].startswith(
            "flagged:"
        ):  # a flagged row sits in the stratum of a rule that fired on it
            assert r["stratum"].split(":")[1] in fired[r["row_id"]]
        else:
            assert r["row_id"] not in fired
    assert sum(r["weight"] for r in sample) == pytest.approx(len(frame))
    assert sorted(r["position"] for r in sample) == list(range(len(sample)))
    assert len({r["row_id"] for r in sample}) == len(sample)


def test_never_render_rows_are_not_sampled_but_listed_by_row_id(drawn) -> None:
    run, _ = drawn
    _, _, never = _frame(run)
    assert never  # the sample corpus has known-bad stand-ins
    excluded = pq.read_table(run / "evaluation" / "excluded.parquet").to_pylist()
    assert {r["row_id"] for r in excluded} == never
    assert {r["reason"] for r in excluded} == {"never_render"}
    sampled = set(pq.read_table(run / "evaluation" / "sample.parquet")["row_id"].to_pylist())
    assert not sampled & never


def test_split_and_second_labels_are_drawn_within_the_design(drawn) -> None:
    run, _ = drawn
    sample = pq.read_table(run / "evaluation" / "sample.parquet").to_pylist()
    by_stratum: dict[str, list[str]] = {}
    for r in sample:
        by_stratum.setdefault(r["stratum"], []).append(r["split"])
    for splits in by_stratum.values():
        assert set(splits) <= {"dev", "test"}
        assert set(splits) == ({"test"} if len(splits) == 1 else {"dev", "test"})
    assert sum(r["double_label"] for r in sample) == round(0.2 * len(sample))
    order = [r["stratum"] for r in sorted(sample, key=lambda r: r["position"])]
    assert order != sorted(order)  # the queue does not show the strata in order


def test_the_same_draw_is_unchanged_another_is_refused_unless_replaced(drawn, tmp_path: Path) -> None:
    run = Path(shutil.copytree(drawn[0], tmp_path / "run"))
    before = (run / "evaluation" / "sample.parquet").read_bytes()
    again = mmaudit("evaluate", "sample", str(run), "--set", "evaluation.unflagged_per_stratum=3",
                    "--set", "evaluation.unflagged_far=6")  # fmt: skip
    assert again.returncode == 0 and again.stdout.startswith("unchanged: ")
    assert (run / "evaluation" / "sample.parquet").read_bytes() == before
    other = mmaudit("evaluate", "sample", str(run), "--set", "evaluation.seed=7")
    assert other.returncode == 2
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--replace" in lines[0]
    assert (run / "evaluation" / "sample.parquet").read_bytes() == before
    replaced = mmaudit("evaluate", "sample", str(run), "--set", "evaluation.seed=7", "--replace")
    assert replaced.returncode == 0 and replaced.stdout.startswith("replaced: ")
    new = pq.read_table(run / "evaluation" / "sample.parquet")
    old = pq.read_table(drawn[0] / "evaluation" / "sample.parquet")
    assert new.column("row_id").to_pylist() != old.column("row_id").to_pylist()
    assert json.loads((run / "evaluation" / "design.json").read_text())["settings"]["seed"] == 7


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "evaluation.near_miss=[0.8, 0.5]"], "invalid value for 'evaluation.near_miss'"),
        (["--set", "evaluation.unflagged_far=0"], "invalid value for 'evaluation.unflagged_far'"),
        (["--set", "evaluation.sedd=1"], "unknown config key 'evaluation.sedd'"),
        (["--set", "removal.min_severity=high"], "evaluate takes evaluation.* keys only"),
        (["--set", "evaluation.categories.slur=racism"], "invalid value for 'evaluation.categories.slur'"),
    ],
)
def test_bad_settings_are_one_error_line_and_exit_2(drawn, args: list[str], expected: str) -> None:
    done = mmaudit("evaluate", "sample", str(drawn[0]), *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]


def test_a_folder_that_is_no_finished_run_is_one_error_line(tmp_path: Path) -> None:
    for args in (["evaluate", "sample", str(tmp_path)], ["evaluate", "report", str(tmp_path)]):
        done = mmaudit(*args)
        assert done.returncode == 2 and done.stderr.strip().splitlines() == [
            f"error: {tmp_path}: not a finished run folder (no summary.json; "
            f"run `mmaudit audit --out {tmp_path}` first)"
        ]


def test_report_without_a_sample_names_the_command(drawn, tmp_path: Path) -> None:
    run = Path(shutil.copytree(drawn[0], tmp_path / "run"))
    shutil.rmtree(run / "evaluation")
    done = mmaudit("evaluate", "report", str(run))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {run}/evaluation/sample.parquet: no labelling sample (run `mmaudit evaluate sample {run}`)"
    ]
    assert open_eval_run(str(run)).has_sample() is False
