"""audit.review.queue: DuckDB queues over real run folders (the audited sample run, and a synthetic run
of 20,000 flags written with the run folder's schemas) checked against the same selection computed
from the flags table in Python."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.benchmarks.synthetic_run import SyntheticRun, synth_run
from audit.render_policy import never_render
from audit.review import NEVER_RENDER_SQL, load_run, record_decision, record_decisions
from audit.review import queue as q
from audit.review.queue import QueueFilter, QueueSort
from audit.schemas import FLAGS_SCHEMA, SEVERITIES


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticRun:
    return synth_run(tmp_path_factory.mktemp("synthetic"), n_flags=20_000, n_shards=4, seed=3)


@pytest.fixture
def synth_dir(synthetic: SyntheticRun, tmp_path: Path) -> Path:
    """A private copy: decisions written by one test stay in it."""
    return Path(shutil.copytree(synthetic.path, tmp_path / "run"))


@pytest.fixture
def run_dir(sample_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sample_run, tmp_path / "sample"))


def _ids(table: pa.Table) -> list[str]:
    return table.column("row_id").to_pylist()


def _all(run, f: QueueFilter, sort: QueueSort | None = None, size: int = 997) -> list[str]:
    """The whole queue, page by page."""
    sort = sort or QueueSort()
    out: list[str] = []
    while True:
        got = _ids(q.page(run, f, sort, len(out), size))
        out += got
        if len(got) < size:
            return out


def test_never_render_sql_agrees_with_the_python_predicate(run_dir: Path) -> None:
    flags = pq.read_table(run_dir / "flags.parquet")
    rows = flags.to_pylist()
    assert any(never_render(r) for r in rows) and not all(never_render(r) for r in rows)
    # every way a row becomes never-render, each alone on an otherwise renderable row
    base = next(r for r in rows if not never_render(r))
    variants = [
        {**base, "row_id": "v:1", "render_blocked": True},
        {**base, "row_id": "v:2", "known_bad_match": True},
        {**base, "row_id": "v:3", "reasons": [*base["reasons"], "csam-risk"]},
        {**base, "row_id": "v:4", "reasons": ["known-bad-hash"]},
        {**base, "row_id": "v:5", "known_bad_match": None},  # unknown: not shown, but still listed
    ]
    table = pa.Table.from_pylist(rows + variants, schema=FLAGS_SCHEMA)
    pq.write_table(table, run_dir / "flags.parquet")
    run = load_run(str(run_dir))
    got = dict(run.db().sql("SELECT row_id, never_render FROM flags").fetchall())
    assert got == {r["row_id"]: never_render(r) for r in table.to_pylist()}
    assert "known_bad_match" in NEVER_RENDER_SQL and "render_blocked" in NEVER_RENDER_SQL


def test_never_render_rows_are_in_no_queue_and_only_listed_by_row_id(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    flags = run.flags.to_pylist()
    blocked = [r["row_id"] for r in flags if never_render(r)]
    assert blocked  # the sample plants known-bad matches
    assert _all(run, QueueFilter()) == [r["row_id"] for r in flags if not never_render(r)]
    assert q.count(run, QueueFilter()) == len(flags) - len(blocked)
    assert q.never_rendered_count(run) == len(blocked)
    listed = q.never_rendered(run)
    assert listed.column_names == ["row_id"] and _ids(listed) == blocked
    for reason in ("known-bad-hash",):  # not even when filtered for
        assert q.count(run, QueueFilter(reasons=(reason,))) == 0


def test_filters_select_what_python_selects(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    rows = [r for r in run.flags.to_pylist() if not never_render(r)]
    order = [r["row_id"] for r in rows]

    def expect(keep) -> list[str]:
        return [r["row_id"] for r in rows if keep(r)]

    cases = {
        QueueFilter(reasons=("offensive-caption",)): lambda r: "offensive-caption" in r["reasons"],
        QueueFilter(reasons=("pii", "slur")): lambda r: {"pii", "slur"} & set(r["reasons"]),
        QueueFilter(min_severity="medium"): lambda r: r["severity_rank"] >= SEVERITIES.index("medium"),
        QueueFilter(shards=("00001",)): lambda r: r["shard_id"] == "00001",
        QueueFilter(text="DUMB"): lambda r: "dumb" in (r["caption"] or "").lower(),
        QueueFilter(score_ranges=(("text_offensive_prob", 0.9, None),)): lambda r: (
            dict(r["scores"]).get("text_offensive_prob", -1) >= 0.9
        ),
        QueueFilter(score_ranges=(("text_offensive_prob", None, 0.95),)): lambda r: (
            "text_offensive_prob" in dict(r["scores"]) and dict(r["scores"])["text_offensive_prob"] <= 0.95
        ),
        QueueFilter(reasons=("offensive-caption",), min_severity="high"): lambda r: (
            "offensive-caption" in r["reasons"] and r["severity_rank"] >= 3
        ),
    }
    for f, keep in cases.items():
        want = expect(keep)
        assert _all(run, f) == want, f
        assert q.count(run, f) == len(want), f
        assert [r for r in order if r in want] == want
    assert any(expect(k) for k in cases.values())


@pytest.mark.parametrize(
    "text", ["%", "_", ".*", "(a|b)", "[x]", "a%b", "\\", "\\%", "'; DROP TABLE flags; --", "DUMB", "é"]
)
def test_caption_search_is_a_literal_substring_never_a_pattern(run_dir: Path, text: str) -> None:
    run = load_run(str(run_dir))
    rows = [r for r in run.flags.to_pylist() if not never_render(r)]
    want = [r["row_id"] for r in rows if text.lower() in (r["caption"] or "").lower()]
    assert _all(run, QueueFilter(text=text)) == want
    assert q.count(run, QueueFilter()) == len(rows)  # the flags view is still there


def test_decision_filter_follows_the_latest_decision(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    ids = _all(run, QueueFilter())
    record_decision(run, ids[0], "confirm_harmful", "ann")
    record_decision(run, ids[0], "false_positive", "bob")  # a change of mind: the latest wins
    record_decision(run, ids[1], "needs_escalation", "ann")
    assert _all(run, QueueFilter(decision="false_positive")) == [ids[0]]
    assert _all(run, QueueFilter(decision="confirm_harmful")) == []
    assert _all(run, QueueFilter(decision="needs_escalation")) == [ids[1]]
    assert _all(run, QueueFilter(decision="undecided")) == ids[2:]
    page = q.page(run, QueueFilter(), QueueSort(), 0, 3).to_pylist()
    assert [(p["latest_decision"], p["latest_reviewer"]) for p in page] == [
        ("false_positive", "bob"),
        ("needs_escalation", "ann"),
        (None, None),
    ]
    with pytest.raises(ValueError, match="unknown decision"):
        QueueFilter(decision="delete")
    with pytest.raises(ValueError, match="severity"):
        QueueFilter(min_severity="severe")


def test_pages_of_a_large_queue_are_its_sorted_rows(synth_dir: Path) -> None:
    run = load_run(str(synth_dir))
    flags = pq.read_table(synth_dir / "flags.parquet").to_pylist()
    shown = [r for r in flags if not never_render(r)]
    assert q.count(run, QueueFilter()) == len(shown) > 19_000
    # severity (the file's own order), then shard and row, then a score with missing values last
    assert _all(run, QueueFilter(), QueueSort("severity")) == [r["row_id"] for r in shown]
    by_row = sorted(shown, key=lambda r: (r["shard_id"], r["row_index"]), reverse=True)
    assert _all(run, QueueFilter(), QueueSort("row", descending=True)) == [r["row_id"] for r in by_row]
    pos = {r["row_id"]: i for i, r in enumerate(flags)}
    score = sorted(shown, key=lambda r: (-dict(r["scores"])["text_hate_prob"], pos[r["row_id"]]))
    assert _all(run, QueueFilter(), QueueSort("score:text_hate_prob"), size=4096) == [
        r["row_id"] for r in score
    ]
    last = q.page(run, QueueFilter(), QueueSort(), len(shown) - 5, 50)
    assert _ids(last) == [r["row_id"] for r in shown[-5:]]
    assert q.page(run, QueueFilter(), QueueSort(), len(shown), 50).num_rows == 0
    assert run._flags is None  # the queue never loaded the flags table


def test_cluster_filter_and_page_clusters_come_from_the_neighbours_files(synth_dir: Path) -> None:
    run = load_run(str(synth_dir))
    nb = pa.concat_tables([pq.read_table(p) for p in sorted((synth_dir / "neighbours").glob("*.parquet"))])
    cluster_of = dict(zip(nb.column("row_id").to_pylist(), nb.column("cluster").to_pylist(), strict=True))
    shown = [
        r["row_id"] for r in pq.read_table(synth_dir / "flags.parquet").to_pylist() if not never_render(r)
    ]
    want = [r for r in shown if cluster_of[r] in (3, 5)]
    assert want and _all(run, QueueFilter(clusters=(3, 5)), size=4096) == want
    page = q.page(run, QueueFilter(), QueueSort(), 0, 20).to_pylist()
    assert [p["cluster"] for p in page] == [cluster_of[p["row_id"]] for p in page]


def test_deciding_moves_to_the_next_row_of_the_queue(synth_dir: Path) -> None:
    run = load_run(str(synth_dir))
    undecided, anything = QueueFilter(decision="undecided"), QueueFilter()
    before = _ids(q.page(run, undecided, QueueSort(), 0, 6))
    record_decision(run, before[2], "confirm_harmful", "ann")
    # the decided row left the undecided queue: the next row now sits where it was
    assert q.next_after_decision(run, undecided, QueueSort(), 2, before[2]) == (before[3], 2)
    # in a queue the decision does not change, the next row is one further
    assert q.next_after_decision(run, anything, QueueSort(), 2, before[2]) == (before[3], 3)
    n = q.count(run, anything)
    last = q.row_at(run, anything, QueueSort(), n - 1)
    assert q.next_after_decision(run, anything, QueueSort(), n - 1, last) == (None, n)
    assert q.row_at(run, anything, QueueSort(), -1) is None


def test_bulk_decision_over_a_filter_result(synth_dir: Path) -> None:
    run = load_run(str(synth_dir))
    f = QueueFilter(reasons=("pii",), shards=("00002",))
    ids = q.row_ids(run, f)
    assert len(ids) == q.count(run, f) > 100
    assert record_decisions(run, ids, "false_positive", "ann", "benign contact lines") == len(ids)
    assert q.count(run, QueueFilter(reasons=("pii",), shards=("00002",), decision="undecided")) == 0
    assert q.count(run, QueueFilter(decision="false_positive")) == len(ids)
