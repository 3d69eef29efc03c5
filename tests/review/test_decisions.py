"""Decisions in RUN/decisions.db: bulk decisions in one transaction, two reviewers writing at once, the
incremental latest-decision table, exports."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audit.benchmarks.synthetic_run import SyntheticRun, synth_run
from audit.review import (
    DECISIONS_TABLE_SCHEMA,
    decision_history,
    export_decisions,
    load_decisions,
    load_run,
    record_decision,
    record_decisions,
)
from audit.review import queue as q
from audit.review.queue import QueueFilter


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticRun:
    return synth_run(tmp_path_factory.mktemp("synthetic"), n_flags=2_000, n_shards=2, seed=5)


@pytest.fixture
def run_dir(synthetic: SyntheticRun, tmp_path: Path) -> Path:
    return Path(shutil.copytree(synthetic.path, tmp_path / "run"))


def _first(run, n: int) -> list[str]:
    return q.row_ids(run, QueueFilter())[:n].to_pylist()


def test_bulk_decision_is_one_transaction_over_each_row_once(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    ids = _first(run, 50)
    assert record_decisions(run, [*ids, *ids[:10]], "confirm_harmful", " ann ", "one cluster") == 50
    history = decision_history(run)
    assert [h.row_id for h in history] == ids  # in the order given, repeats written once
    assert {(h.decision, h.reviewer, h.note) for h in history} == {("confirm_harmful", "ann", "one cluster")}
    assert len({h.decided_at for h in history}) == 1
    assert [h.id for h in history] == list(range(history[0].id, history[0].id + 50))
    assert record_decisions(run, [], "confirm_harmful", "ann") == 0


@pytest.mark.parametrize(
    ("extra", "decision", "reviewer", "match"),
    [
        (["nope:1"], "confirm_harmful", "ann", r"1 of 21 rows are neither flagged nor scored .*'nope:1'"),
        ([], "delete", "ann", "unknown decision"),
        ([], "false_positive", "   ", "reviewer"),
    ],
)
def test_a_bulk_decision_with_a_bad_row_or_value_writes_nothing(
    run_dir: Path, extra: list[str], decision: str, reviewer: str, match: str
) -> None:
    run = load_run(str(run_dir))
    record_decision(run, _first(run, 1)[0], "needs_escalation", "bob")
    with pytest.raises(ValueError, match=match):
        record_decisions(run, [*_first(run, 20), *extra], decision, reviewer)
    assert [h.reviewer for h in decision_history(run)] == ["bob"]


def test_two_reviewers_deciding_the_same_rows_at_once_in_threads_lose_nothing(run_dir: Path) -> None:
    ids = _first(load_run(str(run_dir)), 5)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def reviewer(name: str, decision: str) -> None:
        run = load_run(str(run_dir))  # each reviewer's own dashboard session
        try:
            start.wait()
            for i in range(40):
                record_decision(run, ids[i % len(ids)], decision, name, f"{name} {i}")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [
        threading.Thread(target=reviewer, args=("ann", "confirm_harmful")),
        threading.Thread(target=reviewer, args=("bob", "false_positive")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    history = decision_history(load_run(str(run_dir)))
    assert sorted((h.reviewer, h.note) for h in history) == sorted(
        (name, f"{name} {i}") for name in ("ann", "bob") for i in range(40)
    )
    latest = load_decisions(load_run(str(run_dir)))
    for rid in ids:  # the latest row of each row id wins, whoever wrote it
        assert latest[rid] == [h for h in history if h.row_id == rid][-1]


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from audit.review import load_run, record_decision, record_decisions
    run_dir, name, decision, go = sys.argv[1:5]
    ids = sys.argv[5:]
    run = load_run(run_dir)
    while not Path(go).exists():
        time.sleep(0.005)
    for i in range(30):
        record_decision(run, ids[0], decision, name, f"{name} single {i}")
        record_decisions(run, ids, decision, name, f"{name} bulk {i}")
    """
)


def test_two_reviewer_processes_deciding_one_row_at_once_lose_nothing(run_dir: Path, tmp_path: Path) -> None:
    run = load_run(str(run_dir))
    ids = _first(run, 3)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(run_dir), name, decision, str(go), *ids])
        for name, decision in (("ann", "confirm_harmful"), ("bob", "needs_escalation"))
    ]
    time.sleep(2)  # both have opened the run and wait for the same moment
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    history = decision_history(run)
    assert len(history) == 2 * 30 * (1 + len(ids))
    for name in ("ann", "bob"):
        mine = [h for h in history if h.reviewer == name]
        assert [h.note for h in mine if h.row_id == ids[1]] == [f"{name} bulk {i}" for i in range(30)]
        assert sum(h.note.startswith(f"{name} single") for h in mine) == 30
    # the reviewers interleaved, and the latest row per row id is the one with the highest id
    assert len({h.reviewer for h in history[: len(history) // 2]}) == 2
    latest = run.decision_log.refresh().to_pylist()
    assert {r["row_id"]: r["id"] for r in latest} == {
        rid: max(h.id for h in history if h.row_id == rid) for rid in ids
    }


def test_the_latest_decision_table_reads_only_what_was_appended(run_dir: Path) -> None:
    mine, other = load_run(str(run_dir)), load_run(str(run_dir))  # two dashboard processes
    ids = _first(mine, 3)
    assert mine.decision_log.refresh().num_rows == 0 and mine.decision_log.version == 0
    record_decision(other, ids[0], "confirm_harmful", "bob")
    record_decision(other, ids[1], "needs_escalation", "bob")
    assert sorted(mine.decision_log.refresh().column("row_id").to_pylist()) == sorted(ids[:2])
    seen = mine.decision_log.version
    changed = record_decision(other, ids[0], "false_positive", "carol")
    latest = {r["row_id"]: r for r in mine.decision_log.refresh().to_pylist()}
    assert mine.decision_log.version == changed.id > seen
    assert (latest[ids[0]]["decision"], latest[ids[0]]["reviewer"]) == ("false_positive", "carol")
    assert latest[ids[1]]["decision"] == "needs_escalation"
    assert mine.decision_log.refresh().schema == DECISIONS_TABLE_SCHEMA


def test_decisions_export_to_parquet_and_csv(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    ids = _first(run, 2)
    hostile = 'note, with "quotes"\nand a line break ![x](http://127.0.0.1:9/x.png)'
    record_decision(run, ids[0], "confirm_harmful", "ann", hostile)
    record_decision(run, ids[0], "false_positive", "bob")
    record_decision(run, ids[1], "needs_escalation", "ann")
    history = decision_history(run)
    table = pq.read_table(io.BytesIO(export_decisions(run, "parquet")))
    assert table.schema.equals(DECISIONS_TABLE_SCHEMA, check_metadata=False)
    assert [tuple(r.values()) for r in table.to_pylist()] == [tuple(vars(h).values()) for h in history]
    latest = pq.read_table(io.BytesIO(export_decisions(run, "parquet", latest_only=True))).to_pylist()
    assert [(r["row_id"], r["decision"]) for r in latest] == [
        (ids[0], "false_positive"),
        (ids[1], "needs_escalation"),
    ]
    rows = list(csv.DictReader(io.StringIO(export_decisions(run, "csv").decode("utf-8"), newline="")))
    assert [r["note"] for r in rows] == [hostile, "", ""]
    assert [int(r["id"]) for r in rows] == [h.id for h in history]
    with pytest.raises(ValueError, match="format"):
        export_decisions(run, "xlsx")  # type: ignore[arg-type]


def test_exporting_with_no_decisions_creates_no_database(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    assert pq.read_table(io.BytesIO(export_decisions(run, "parquet"))).num_rows == 0
    assert export_decisions(run, "csv").decode().splitlines() == [",".join(DECISIONS_TABLE_SCHEMA.names)]
    assert not (run_dir / "decisions.db").exists()
