"""The label store (RUN/evaluation/labels.db) and the blind labelling queue, on a real audit of the
sample corpus with a drawn sample: append-only in the database itself, whole-batch validation, the
first labeller's latest label, second labels, and pairs that carry nothing but the pair."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audit.evaluation import (
    label_history,
    labels_table,
    latest_labels,
    open_eval_run,
    record_label,
    record_labels,
)
from audit.evaluation.estimates import load_labelled
from audit.evaluation.queue import LabellingPair, labelling_pair, next_rows, queue_status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sampled(sample_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = Path(shutil.copytree(sample_run, tmp_path_factory.mktemp("eval-labels") / "run"))
    done = subprocess.run([sys.executable, "-m", "audit.cli", "evaluate", "sample", str(run)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return run


@pytest.fixture
def ev(sampled: Path, tmp_path: Path):
    """A private copy: labels written here stay in this test."""
    return open_eval_run(str(shutil.copytree(sampled, tmp_path / "run")))


def _queue(ev) -> list[str]:
    return ev.sample().sort_by("position").column("row_id").to_pylist()


def test_labels_are_append_only_in_the_database_itself(ev) -> None:
    row = _queue(ev)[0]
    record_label(ev, row, ["hate"], "ana")
    with sqlite3.connect(ev.labels_db) as conn:
        for sql in ("UPDATE labels SET hate = 0", "DELETE FROM labels"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(sql)
        with pytest.raises(sqlite3.IntegrityError):  # benign with a harm: refused by the table too
            conn.execute(
                "INSERT INTO labels (row_id, reviewer, sexual, violence, hate, harassment, pii, benign, "
                "unsure, labelled_at) VALUES (?, 'x', 0, 0, 1, 0, 0, 1, 0, 'now')",
                (row,),
            )
    assert [h.categories for h in label_history(ev, row)] == [("hate",)]


@pytest.mark.parametrize(
    ("categories", "message"),
    [
        ([], "at least one category"),
        (["hate", "benign"], "'benign' is a label on its own"),
        (["unsure", "pii"], "'unsure' is a label on its own"),
        (["racism"], "unknown label category 'racism'"),
    ],
)
def test_bad_category_sets_are_refused_and_nothing_is_written(ev, categories, message) -> None:
    rows = _queue(ev)
    with pytest.raises(ValueError, match=message):
        record_labels(ev, [(rows[0], ["hate"]), (rows[1], categories)], "ana")
    assert labels_table(ev).num_rows == 0


def test_only_sampled_rows_take_labels_and_a_reviewer_is_needed(ev) -> None:
    excluded = pq.read_table(ev.excluded_path)["row_id"].to_pylist()
    rows = _queue(ev)
    with pytest.raises(ValueError, match="not in the labelling sample"):
        record_labels(ev, [(rows[0], ["benign"]), (excluded[0], ["sexual"])], "ana")
    with pytest.raises(ValueError, match="reviewer"):
        record_label(ev, rows[0], ["benign"], "  ")
    assert not ev.labels_db.exists() or labels_table(ev).num_rows == 0


def test_the_first_labellers_latest_label_is_the_truth_and_unsure_rows_are_left_out(ev) -> None:
    a, b, c = _queue(ev)[:3]
    record_label(ev, a, ["benign"], "ana")
    record_label(ev, a, ["harassment"], "bo")  # a second labeller: agreement only
    record_label(ev, a, ["hate", "harassment"], "ana")  # ana changes her mind: the latest wins
    record_label(ev, b, ["unsure"], "ana")
    record_label(ev, c, ["pii"], "bo")
    latest = {(r["row_id"], r["reviewer"]): r for r in latest_labels(ev).to_pylist()}
    assert latest[(a, "ana")]["order"] == 1 and latest[(a, "bo")]["order"] == 2
    assert latest[(a, "ana")]["hate"] and not latest[(a, "ana")]["benign"]
    assert len(label_history(ev, a)) == 3  # the history stays
    data = load_labelled(ev)
    assert list(data.row_id) == sorted([a, c])
    assert data.counts["unsure_rows"] == 1 and data.counts["labelled_rows"] == 3
    assert data.counts["double_labelled_rows"] == 1 and data.counts["reviewers"] == ["ana", "bo"]
    i = list(data.row_id).index(a)
    assert data.truth["hate"][i] and data.truth["harassment"][i] and not data.truth["pii"][i]
    assert data.scores.column("row_id").to_pylist() == list(data.row_id)


def test_the_queue_offers_unlabelled_rows_then_second_labels_never_ones_own(ev) -> None:
    order = _queue(ev)
    double = set(ev.sample().filter(ev.sample().column("double_label")).column("row_id").to_pylist())
    assert next_rows(ev, "ana", 3) == order[:3]
    first = next(r for r in order if r in double)
    single = next(r for r in order if r not in double)
    record_labels(ev, [(first, ["benign"]), (single, ["benign"])], "ana")
    assert first not in next_rows(ev, "ana", len(order)) and single not in next_rows(ev, "ana", len(order))
    for_bo = next_rows(ev, "bo", len(order))
    assert first in for_bo and single not in for_bo  # only double-label rows get a second labeller
    record_label(ev, first, ["benign"], "bo")
    assert first not in next_rows(ev, "cy", len(order))  # two labels are enough
    status = queue_status(ev, "bo")
    assert (status.sampled, status.labelled, status.by_reviewer) == (len(order), 2, 1)
    assert status.waiting == len(order) - 2 and status.excluded_never_render >= 1


def test_a_pair_carries_no_score_flag_stratum_key_or_url(ev) -> None:
    assert {f.name for f in fields(LabellingPair)} == {"row_id", "caption", "render_row"}
    for row_id in _queue(ev):
        pair = labelling_pair(ev, row_id)
        assert set(pair.render_row) == {
            "row_id",
            "shard_id",
            "row_index",
            "known_bad_match",
            "render_blocked",
        }
        assert pair.render_row["render_blocked"] is False
    excluded = pq.read_table(ev.excluded_path)["row_id"].to_pylist()
    with pytest.raises(KeyError, match="not in the labelling sample"):
        labelling_pair(ev, excluded[0])


def test_reading_labels_creates_no_database(ev) -> None:
    assert labels_table(ev).num_rows == 0 and latest_labels(ev).num_rows == 0
    assert not ev.labels_db.exists()
