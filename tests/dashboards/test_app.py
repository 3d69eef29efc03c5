"""The review dashboard in Streamlit's AppTest: every page and the decision flow (one row, bulk over a
selection, a filter and a cluster, two reviewers on one row), on a private copy of the audited sample
run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from audit.render_policy import may_render, never_render
from audit.review import decision_history, load_run
from audit.review import queue as q
from audit.review.queue import QueueFilter
from audit.schemas import CLIP_RANDOM_WARNING

pytestmark = pytest.mark.slow


def _elements(node):
    from streamlit.testing.v1.element_tree import Block

    if isinstance(node, Block):
        for child in node.children.values():
            yield from _elements(child)
    else:
        yield node


def _assert_never_render_rows_stay_hidden(at, run) -> None:
    """Nothing of a never-render row (key, caption, URL) is on the page: at most its row id."""
    hidden = {
        s
        for f in run.flags.to_pylist()
        if never_render(f)
        for s in (f["key"], f["caption"], f["url"])
        if s and len(s) >= 6
    }
    assert hidden
    for el in _elements(at._tree):
        shown = str(el.proto) + (el.value.to_csv() if el.type == "dataframe" else "")
        leaked = [s for s in hidden if s in shown]
        assert not leaked, f"{el.type} shows {leaked[:2]} of a never-render row"


def _images(at) -> list[str]:
    return [img.proto.imgs[0].caption for img in at.get("image")]


def _main_text(at) -> list[str]:
    return [t.value for t in at.main.text]


def test_every_page_draws_and_never_shows_a_never_render_row(review_run: Path, driver) -> None:
    at = driver.start(review_run)
    run = load_run(str(review_run))
    assert not at.exception and at.title[0].value == "Overview"
    for page, title in (
        ("queue", "Queue"),
        ("gallery", "Gallery"),
        ("detail", "Pair detail"),
        ("clusters", "Clusters"),
        ("more_like_this", "More like this"),
        ("quarantine", "Quarantine"),
        ("overview", "Overview"),
    ):
        driver.go(at, page)
        assert not at.exception, page
        assert at.title[0].value == title
        _assert_never_render_rows_stay_hidden(at, run)
    # the gallery and a cluster show thumbnails: only of rows that may be rendered
    driver.go(at, "gallery")
    shown = {f["row_id"] for f in run.flags.to_pylist() if may_render(f)}
    assert len(_images(at)) == len(shown) > 0


def test_overview_counts_plots_warns_and_lists_never_render_rows_by_id(review_run: Path, driver) -> None:
    at = driver.start(review_run)
    run = load_run(str(review_run))
    s = run.summary
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["rows in"], metrics["scored"], metrics["quarantined"], metrics["flagged"]) == tuple(
        str(n) for n in (s.rows_in, s.rows_scored, s.rows_quarantined, s.rows_flagged)
    )
    blocked = [f["row_id"] for f in run.flags.to_pylist() if never_render(f)]
    assert metrics["never rendered"] == str(len(blocked)) and blocked
    assert [w.value for w in at.warning] == [CLIP_RANDOM_WARNING]
    charts = [el for el in _elements(at._tree) if el.type == "vega_lite_chart"]
    assert len(charts) >= 4  # reasons x severity, shards, quarantine, scores, clusters
    never = next(d for d in at.dataframe if list(d.value.columns) == ["row_id"])
    assert never.value["row_id"].tolist() == blocked
    assert [b.label for b in at.get("download_button")] == [
        "Latest decisions (parquet)",
        "Latest decisions (csv)",
        "All decisions (parquet)",
        "All decisions (csv)",
    ]


def test_queue_filters_and_a_click_opens_the_row_with_next_and_previous(review_run: Path, driver) -> None:
    at = driver.go(driver.start(review_run), "queue")
    run = load_run(str(review_run))
    queue = q.row_ids(run, QueueFilter()).to_pylist()
    table = driver.table(at, "queue-table")
    assert table.value["row_id"].tolist() == queue
    assert f"{len(queue)} flagged pairs match" in _main_text(at)[0]
    # captions are masked in the table: the sample's slur caption shows no slur
    captions = " ".join(table.value["caption"])
    assert "white trash" not in captions and "⟦w**** *****⟧" in captions

    at.sidebar.multiselect(key="f.reasons").select("offensive-caption").run()
    offensive = q.row_ids(run, QueueFilter(reasons=("offensive-caption",))).to_pylist()
    assert driver.table(at, "queue-table").value["row_id"].tolist() == offensive and len(offensive) > 2

    driver.click_row(at, "queue-table", 1)
    assert at.title[0].value == "Pair detail"
    driver.on(at, "detail")
    assert f"row {offensive[1]}\n" in "\n".join(_main_text(at)) + "\n"
    assert f"row 2 of {len(offensive)} in the queue" in _main_text(at)
    at.button(key="detail-next").click().run()
    assert f"row {offensive[2]}" in "\n".join(_main_text(at))
    at.button(key="detail-prev").click().run()
    at.button(key="detail-prev").click().run()
    assert f"row 1 of {len(offensive)} in the queue" in _main_text(at)
    assert at.button(key="detail-prev").disabled
    at.button(key="detail-back").click().run()
    assert at.title[0].value == "Queue"


def test_detail_blurs_masks_and_counts_reveals(review_run: Path, driver) -> None:
    at = driver.go(driver.start(review_run, "--break-after", "2"), "queue")
    run = load_run(str(review_run))
    queue = q.row_ids(run, QueueFilter()).to_pylist()
    slur = next(f["row_id"] for f in run.flags.to_pylist() if f["caption"] and "white trash" in f["caption"])
    driver.click_row(at, "queue-table", queue.index(slur))
    driver.on(at, "detail")
    assert _images(at) == ["blurred"]
    text = "\n".join(_main_text(at))
    assert "caption: ⟦w**** *****⟧" in text and "white trash" not in text
    at.checkbox(key=f"terms-{slur}").check().run()
    assert "caption: ⟦white trash⟧" in "\n".join(_main_text(at))
    assert "images revealed this session: 0" in [t.value for t in at.sidebar.text]
    at.checkbox(key=f"reveal-{slur}").check().run()
    assert _images(at) == ["revealed"]
    assert "images revealed this session: 1" in [t.value for t in at.sidebar.text]
    scores = next(d for d in at.dataframe if "scorer" in d.value.columns).value
    assert {"alt-profanity-check", "hatesonar"} <= set(scores["scorer"])
    # a second image revealed: past the limit of 2, the break reminder
    at.button(key="detail-next").click().run()
    nxt = queue[queue.index(slur) + 1]
    assert _images(at) == ["blurred"]  # revealing one image never reveals the next
    at.checkbox(key=f"reveal-{nxt}").check().run()
    assert [w.value for w in at.sidebar.warning] == [
        "Break reminder: you have revealed many images since your last break."
    ]
    at.sidebar.button(key="took-break").click().run()
    assert not at.sidebar.warning
    assert "images revealed this session: 2" in [t.value for t in at.sidebar.text]


def test_deciding_needs_a_name_records_and_moves_to_the_next_row(review_run: Path, driver) -> None:
    at = driver.go(driver.start(review_run), "queue")
    at.sidebar.selectbox(key="f.decision").select("undecided").run()
    run = load_run(str(review_run))
    queue = q.row_ids(run, QueueFilter()).to_pylist()
    driver.click_row(at, "queue-table", 0)
    driver.on(at, "detail")
    first = queue[0]
    assert at.button(key=f"confirm_harmful-{first}").disabled  # no reviewer name yet
    at.sidebar.text_input(key="reviewer").input("ann").run()
    at.text_input(key=f"note-{first}").input("slur in caption").run()
    at.button(key=f"confirm_harmful-{first}").click().run()
    assert not at.exception
    assert [(h.row_id, h.decision, h.reviewer, h.note) for h in decision_history(run)] == [
        (first, "confirm_harmful", "ann", "slur in caption")
    ]
    driver.on(at, "detail")
    # the undecided queue lost its first row: the next one is now its first
    assert at.success[0].value == "Decision recorded."
    assert f"recorded confirm_harmful for {first} by ann" in _main_text(at)
    assert f"row {queue[1]}" in "\n".join(_main_text(at))
    assert f"row 1 of {len(queue) - 1} in the queue" in _main_text(at)
    at.button(key=f"false_positive-{queue[1]}").click().run()
    driver.on(at, "detail")
    assert f"row {queue[2]}" in "\n".join(_main_text(at))
    assert [h.row_id for h in decision_history(run)] == queue[:2]


def test_bulk_decisions_over_a_selection_a_filter_and_a_cluster(review_run: Path, driver) -> None:
    run = load_run(str(review_run))
    at = driver.go(driver.start(review_run), "gallery")
    at.sidebar.text_input(key="reviewer").input("ann").run()
    queue = q.row_ids(run, QueueFilter()).to_pylist()
    for rid in queue[:2]:
        at.checkbox(key=f"gallery-select-{rid}").check().run()
    assert "2 selected" in _main_text(at)[0]
    at.button(key="false_positive-gallery-bulk").click().run()
    history = decision_history(run)
    assert sorted(h.row_id for h in history) == sorted(queue[:2])
    assert {h.decision for h in history} == {"false_positive"} and len({h.decided_at for h in history}) == 1
    assert f"{len(queue)} flagged pairs match; 0 selected" in _main_text(at)

    driver.go(at, "queue")
    at.sidebar.multiselect(key="f.reasons").select("offensive-caption").run()
    offensive = q.row_ids(run, QueueFilter(reasons=("offensive-caption",))).to_pylist()
    assert at.button(key="needs_escalation-queue-bulk").disabled  # not until confirmed
    at.checkbox(key="queue-bulk-confirm").check().run()
    at.button(key="needs_escalation-queue-bulk").click().run()
    latest = {h.row_id: h.decision for h in decision_history(run)}
    assert {r: latest[r] for r in offensive} == dict.fromkeys(offensive, "needs_escalation")

    driver.go(at, "clusters")
    ranking = driver.table(at, "clusters-table").value
    cluster = int(ranking[ranking["in_queue"] > 0]["cluster"].iloc[0])
    at.selectbox(key="clusters-pick").select(cluster).run()
    members = q.row_ids(run, QueueFilter(clusters=(cluster,))).to_pylist()
    assert (
        f"cluster {cluster}: {len(members)} flagged rows to review (never-render rows left out)"
        in _main_text(at)
    )
    at.checkbox(key=f"cluster-confirm-{cluster}").check().run()
    at.button(key=f"confirm_harmful-cluster-{cluster}").click().run()
    latest = {h.row_id: h for h in decision_history(run)}
    assert {latest[r].decision for r in members} == {"confirm_harmful"}


def test_two_reviewers_deciding_the_same_row_lose_nothing(review_run: Path, driver) -> None:
    run = load_run(str(review_run))
    first = q.row_ids(run, QueueFilter()).to_pylist()[0]
    sessions = []
    for name in ("ann", "bob"):  # two browsers on one server: each opens the row before either decides
        at = driver.go(driver.start(review_run), "queue")
        at.sidebar.text_input(key="reviewer").input(name).run()
        driver.click_row(at, "queue-table", 0)
        driver.on(at, "detail")
        assert "latest decision: none (undecided)" in _main_text(at)
        sessions.append(at)
    ann, bob = sessions
    ann.button(key=f"confirm_harmful-{first}").click().run()
    bob.button(key=f"false_positive-{first}").click().run()  # from a page drawn before ann's decision
    history = decision_history(run, first)
    assert [(h.reviewer, h.decision) for h in history] == [
        ("ann", "confirm_harmful"),
        ("bob", "false_positive"),
    ]
    for at in (ann, bob):  # both see the latest decision when they come back to the row
        driver.click_row(driver.go(at, "queue"), "queue-table", 0)
        driver.on(at, "detail")
        assert "latest decision: false_positive by bob\nnote:" in _main_text(at)
        history_table = next(d for d in at.dataframe if "reviewer" in d.value.columns).value
        assert history_table["reviewer"].tolist() == ["ann", "bob"]


def test_more_like_this_expands_from_a_row_and_decides_its_results_flagged_or_not(
    review_run: Path, driver
) -> None:
    run = load_run(str(review_run))
    at = driver.go(driver.start(review_run), "queue")
    at.sidebar.text_input(key="reviewer").input("ann").run()
    queue = q.row_ids(run, QueueFilter()).to_pylist()
    driver.click_row(at, "queue-table", 0)
    driver.on(at, "detail")
    at.button(key=f"mlt-{queue[0]}").click().run()
    assert at.title[0].value == "More like this"
    driver.on(at, "more_like_this")
    assert at.multiselect(key="mlt-seeds").value == [queue[0]]

    def find() -> tuple[list[str], list[str]]:
        at.number_input(key="mlt-k").set_value(100).run()  # every row of the small sample
        at.button(key="mlt-find").click().run()
        found = driver.table(at, "mlt-table").value
        assert len(found) > 5 and queue[0] not in found["row_id"].tolist()
        rows = list(zip(found["row_id"], found["flagged"], strict=True))
        return [r for r, f in rows if f and r in queue], [r for r, f in rows if not f]

    flagged, unflagged = find()
    assert flagged and unflagged  # the sample's index holds both kinds near any row
    at.checkbox(key="mlt-unflagged").uncheck().run()  # the flagged rows only
    at.button(key="needs_escalation-mlt-bulk").click().run()
    latest = {h.row_id: h.decision for h in decision_history(run)}
    assert {r: latest.get(r) for r in flagged} == dict.fromkeys(flagged, "needs_escalation")
    assert not set(unflagged) & set(latest)
    flagged, unflagged = find()
    at.checkbox(key="mlt-unflagged").check().run()  # the default: every row found
    at.button(key="confirm_harmful-mlt-bulk").click().run()
    latest = {h.row_id: h.decision for h in decision_history(run)}
    assert {r: latest.get(r) for r in flagged + unflagged} == dict.fromkeys(
        flagged + unflagged, "confirm_harmful"
    )


def test_quarantine_lists_rows_by_reason(review_run: Path, driver) -> None:
    at = driver.go(driver.start(review_run), "quarantine")
    run = load_run(str(review_run))
    counts = at.dataframe[0].value
    assert dict(zip(counts["reason"], counts["rows"], strict=True)) == run.summary.quarantine_by_reason
    reason = sorted(run.summary.quarantine_by_reason)[0]
    at.multiselect(key="quarantine-reasons").select(reason).run()
    rows = at.dataframe[1].value
    assert set(rows["reason"]) == {reason} and len(rows) == run.summary.quarantine_by_reason[reason]
    assert not at.get("image")  # no image of a quarantined row, ever


def test_without_a_run_the_latest_finished_run_under_runs_opens(
    review_run: Path, tmp_path: Path, driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    older = Path(shutil.copytree(review_run, runs / "older"))
    newer = Path(shutil.copytree(review_run, runs / "newer"))
    summary = json.loads((newer / "summary.json").read_text())
    (newer / "summary.json").write_text(json.dumps({**summary, "run_name": "the newer run"}))
    os.utime(older / "summary.json", (1_000_000, 1_000_000))
    monkeypatch.chdir(tmp_path)
    at = driver.start_without_run()
    assert not at.exception
    assert "run: the newer run" in [t.value for t in at.text]
