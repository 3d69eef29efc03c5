"""The Labelling page: blind (no score, flag, rule, stratum, key or URL on the page), blurred and masked
like review, never-render rows only counted, labels recorded append-only with the reviewer; in AppTest
and in headless Chromium, on a private copy of the audited sample run with a sample drawn by the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audit.evaluation import label_history, labels_table, open_eval_run
from audit.rules import load_rules
from audit.schemas import SCORE_COLUMNS

pytestmark = pytest.mark.slow


@pytest.fixture
def sampled_run(review_run: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "audit.cli", "evaluate", "sample", str(review_run)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return review_run


def _forbidden(run: Path, row_id: str) -> set[str]:
    """What a blind page must not show of the run and of the row on screen: score names, rule ids,
    reason codes, strata, the row's key and URL, and its score values."""
    ev = open_eval_run(str(run))
    rules = load_rules(str(ev.manifest.config.get("rules", "default")))
    out = set(SCORE_COLUMNS) | {r.id for r in rules.rules} | {r.reason for r in rules.rules}
    out |= {"flagged:", "unflagged:", *(s for s in ev.sample().column("stratum").to_pylist())}
    for f in (run / "scores").glob("*.parquet"):
        for row in pq.read_table(f).to_pylist():
            if row["row_id"] != row_id:
                continue
            out |= {row["key"], row["url"]}
            for name, value in row.items():
                if name in SCORE_COLUMNS and isinstance(value, float) and 0.001 < value < 0.999:
                    out.add(f"{value:.3g}")
    return {s for s in out if s and len(s) >= 4}


def _shown(at) -> str:
    """Every string on the page: element bodies, labels, help and options (widget ids left out: they
    hold keys, not text shown)."""
    from streamlit.testing.v1.element_tree import Block

    def walk(node):
        if isinstance(node, Block):
            for child in node.children.values():
                yield from walk(child)
        else:
            yield node

    parts = []
    for el in walk(at._tree):
        proto = type(el.proto)()
        proto.CopyFrom(el.proto)
        if "id" in proto.DESCRIPTOR.fields_by_name:
            proto.ClearField("id")
        parts.append(str(proto))
    return "\n".join(parts)


def _row_on_page(at) -> str:
    return next(t.value for t in at.main.text if t.value.startswith("row ")).split()[1]


def test_labelling_page_is_blind_and_records_labels_with_the_reviewer(sampled_run: Path, driver) -> None:
    at = driver.start(sampled_run)
    at = driver.go(at, "labelling")
    assert not at.exception and at.title[0].value == "Labelling"
    ev = open_eval_run(str(sampled_run))
    status = "\n".join(t.value for t in at.main.text)
    excluded = pq.read_table(ev.excluded_path).num_rows
    assert f"{excluded} never-render rows are not labelled" in status and excluded > 0
    assert [i.value for i in at.main.info] == ["Enter your name in the sidebar to label."]
    at.text_input(key="reviewer").input("ana").run()
    first = ev.sample().sort_by("position").column("row_id")[0].as_py()
    assert _row_on_page(at) == first
    shown = _shown(at)
    leaked = sorted(s for s in _forbidden(sampled_run, first) if s in shown)
    assert not leaked, f"the labelling page shows {leaked[:5]}"
    images = at.get("image")
    if images:  # a row whose image may be shown: blurred until revealed
        assert [i.proto.imgs[0].caption for i in images] == ["blurred"]
    save = next(b for b in at.button if b.label == "Save harms")
    assert save.disabled  # nothing ticked yet
    next(c for c in at.checkbox if c.label == "Hate").check().run()
    next(c for c in at.checkbox if c.label == "Harassment / abuse").check().run()
    next(b for b in at.button if b.label == "Save harms").click().run()
    assert not at.exception
    history = label_history(ev, first)
    assert [(h.reviewer, h.categories) for h in history] == [("ana", ("hate", "harassment"))]
    second = _row_on_page(at)
    assert second != first  # the next pair of the queue
    assert not sorted(s for s in _forbidden(sampled_run, second) if s in _shown(at))
    next(b for b in at.button if b.label == "Benign").click().run()
    assert [h.categories for h in label_history(ev, second)] == [("benign",)]
    assert labels_table(ev).num_rows == 2


def test_labelling_page_without_a_sample_names_the_command(review_run: Path, driver) -> None:
    at = driver.go(driver.start(review_run), "labelling")
    assert not at.exception
    assert [i.value for i in at.main.info] == [
        "No labelling sample yet: run `mmaudit evaluate sample RUN` first."
    ]


def test_labelling_in_chromium_shows_no_score_and_saves_a_label(
    sampled_run: Path, serve_dashboard, chromium, settle_page
) -> None:
    port = serve_dashboard(sampled_run)
    ev = open_eval_run(str(sampled_run))
    first = ev.sample().sort_by("position").column("row_id")[0].as_py()
    page = chromium.new_page()
    page.goto(f"http://127.0.0.1:{port}/labelling")
    settle_page(page)
    page.get_by_role("heading", name="Labelling").first.wait_for(timeout=60_000)
    page.get_by_label("Reviewer name").fill("bo")
    page.get_by_label("Reviewer name").press("Enter")
    settle_page(page)
    page.get_by_text(f"row {first}", exact=True).wait_for(timeout=60_000)
    body = page.inner_text("body")
    leaked = sorted(s for s in _forbidden(sampled_run, first) if s in body)
    assert not leaked, f"the labelling page shows {leaked[:5]}"
    assert "never-render rows are not labelled" in body
    page.get_by_role("button", name="Benign").click()
    settle_page(page)
    page.get_by_text("Label recorded.").wait_for(timeout=60_000)
    assert [(h.reviewer, h.categories) for h in label_history(ev, first)] == [("bo", ("benign",))]
