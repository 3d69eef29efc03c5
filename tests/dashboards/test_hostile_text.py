"""Dataset- and user-controlled strings reach the reviewer's screen as text, never as Markdown or HTML.

The run's keys, captions, URLs, run name, shard id, reason code, and a reviewer's name and note all
carry Markdown images, links and raw <img> tags pointing at a canary server on 127.0.0.1. If any of
them were rendered, the browser would fetch from it (unblurred, even on a known-bad row).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.review import decision_history, load_run, record_decision

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
CANARY = "mmaudit-canary"  # in every hostile URL (conftest's CanaryServer.hostile)

pytestmark = pytest.mark.slow

# element types that show text as text (st.text, st.code, st.dataframe's canvas, an image's pixels,
# and Vega-Lite charts, which draw data values as SVG text; tested below to carry no tooltip, link or
# image channel, the only ways a chart could turn a value into markup or a request)
PLAIN_ELEMENTS = {"text", "code", "dataframe", "imgs", "vega_lite_chart"}
# widgets whose options and value are plain text but whose label and help are Markdown
OPTION_WIDGETS = {"selectbox", "multiselect", "text_input"}
# what a never-render row may show: its row id only
HIDDEN = ("key_bad",)


@pytest.fixture
def hostile(hostile_source, tmp_path: Path):
    """A private copy of the hostile run (decisions written here stay in this test), with a decision
    by another reviewer whose name and note are hostile too, and the canary's log emptied."""
    h = hostile_source
    assert h.canary == CANARY
    copy = dataclasses.replace(
        h, path=Path(shutil.copytree(h.path, tmp_path / "run")), strings=dict(h.strings)
    )
    copy.strings["other_reviewer"] = h.server.hostile("reviewer-other")
    copy.strings["other_note"] = h.server.hostile("note-other")
    copy.strings["reviewer"] = h.server.hostile("reviewer-ui")
    copy.strings["note"] = h.server.hostile("note-ui")
    run = load_run(str(copy.path))
    target = next(f for f in run.flags.to_pylist() if f["key"] == h.strings["key_noimage"])
    record_decision(
        run, target["row_id"], "false_positive", copy.strings["other_reviewer"], copy.strings["other_note"]
    )
    h.server.requests.clear()
    return copy


def _elements(node) -> Iterator:
    from streamlit.testing.v1.element_tree import Block

    if isinstance(node, Block):
        for child in node.children.values():
            yield from _elements(child)
    else:
        yield node


def _shown_fields(proto) -> str:
    """Every string the element carries (body, label, caption, help), less its widget id, which holds
    the widget's key (a row id here) and is never shown."""
    shown = type(proto)()
    shown.CopyFrom(proto)
    if "id" in shown.DESCRIPTOR.fields_by_name:
        shown.ClearField("id")
    return str(shown)


def _spec_keys_and_marks(spec: object) -> tuple[set[str], set[str]]:
    """Every key of a Vega-Lite spec, and the mark types it draws."""
    keys: set[str] = set()
    marks: set[str] = set()
    todo = [spec]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            keys |= set(node)
            mark = node.get("mark")
            if mark is not None:
                marks.add(mark if isinstance(mark, str) else mark.get("type", ""))
            todo += node.values()
        elif isinstance(node, list):
            todo += node
    return keys, marks


def _assert_no_markup(at) -> list[str]:
    """No element that renders Markdown or HTML holds a hostile string; returns the plain texts shown."""
    texts = []
    for el in _elements(at._tree):
        if el.type in PLAIN_ELEMENTS:
            if el.type in ("text", "code"):
                texts.append(el.value)
            if el.type == "vega_lite_chart":
                keys, marks = _spec_keys_and_marks(json.loads(el.proto.spec))
                assert not {"tooltip", "href", "url"} & keys and "image" not in marks, keys
            continue
        if el.type in OPTION_WIDGETS:
            rendered = f"{el.label} {el.help or ''} {getattr(el, 'placeholder', '')}"
        else:
            rendered = _shown_fields(el.proto)
        assert CANARY not in rendered, f"{el.type} renders a hostile string as Markdown: {rendered[:300]}"
    return texts


def _visible_checks(hostile, visible: str) -> None:
    for what, value in hostile.strings.items():
        if what in HIDDEN:  # a known-bad row: counted and listed by row id, nothing else of it shown
            assert value not in visible, f"the {what} of a never-render row is shown"
        else:
            assert value in visible, f"the {what} is not shown as text"


def test_app_shows_hostile_strings_only_as_plain_text(hostile, driver) -> None:
    at = driver.start(hostile.path)
    assert not at.exception
    shown = _assert_no_markup(at)
    for page in ("queue", "gallery", "clusters", "more_like_this", "quarantine"):
        driver.go(at, page)
        assert not at.exception, page
        shown += _assert_no_markup(at)
    driver.go(at, "gallery")
    for box in [c for c in at.checkbox if c.key and c.key.startswith("gallery-reveal-")]:
        box.check().run()
        shown += _assert_no_markup(at)
    driver.go(at, "queue")
    rows = driver.table(at, "queue-table").value["row_id"].tolist()
    assert len(rows) == 3  # the known-bad row is in no queue
    for i, row_id in enumerate(rows):  # every row's detail, image and masked terms revealed
        driver.click_row(driver.go(at, "queue"), "queue-table", i)
        driver.on(at, "detail")
        assert not at.exception
        shown += _assert_no_markup(at)
        for key in (f"reveal-{row_id}", f"terms-{row_id}"):
            if key in [c.key for c in at.checkbox]:
                at.checkbox(key=key).check().run()
                shown += _assert_no_markup(at)
    driver.click_row(driver.go(at, "queue"), "queue-table", 0)
    driver.on(at, "detail")
    at.sidebar.text_input(key="reviewer").input(hostile.strings["reviewer"]).run()
    at.text_input(key=f"note-{rows[0]}").input(hostile.strings["note"]).run()
    at.button(key=f"needs_escalation-{rows[0]}").click().run()
    assert not at.exception
    shown += _assert_no_markup(driver.on(at, "detail"))
    at.button(key="detail-prev").click().run()  # back to the decided row: its note and reviewer
    shown += _assert_no_markup(at)

    _visible_checks(hostile, "\n".join(shown))
    last = decision_history(load_run(str(hostile.path)))[-1]
    assert (last.reviewer, last.note) == (hostile.strings["reviewer"], hostile.strings["note"])
    assert hostile.server.requests == []


def _canary_elements(page) -> int:
    return page.locator(f'img[src*="{CANARY}"], a[href*="{CANARY}"], iframe[src*="{CANARY}"]').count()


def test_browser_fetches_nothing_for_hostile_strings(
    hostile, serve_dashboard, chromium, settle_page, browser, tmp_path: Path
) -> None:
    settle = settle_page
    port = serve_dashboard(hostile.path)
    urls: list[str] = []
    texts: list[str] = []
    dom_hits: list[int] = []  # images, links and frames built from hostile strings, per page state

    def look() -> None:
        texts.append(page.inner_text("body"))
        dom_hits.append(_canary_elements(page))

    context = chromium.new_context(viewport={"width": 1400, "height": 2600})
    context.on("request", lambda r: urls.append(r.url))  # every frame and worker of the page
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
    page.get_by_role("heading", name="Overview").wait_for(timeout=60_000)
    browser.wait_drawn(page)  # its plots label bars with the hostile reason and shard id
    look()
    page.get_by_label("Reviewer name").fill(hostile.strings["reviewer"])
    page.get_by_label("Reviewer name").press("Enter")
    settle(page)
    browser.open_page(page, "Queue")
    # the hostile reason as a filter: listed in the open dropdown, then shown as the chosen chip
    page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"]').first.click()
    page.locator('[role="listbox"] [role="option"]').filter(has_text="offensive reason").click()
    page.keyboard.press("Escape")
    settle(page)
    look()
    for i in range(3):  # every row of the queue (the known-bad one is in none), revealed where it may be
        browser.open_page(page, "Queue")
        browser.click_grid_row(page, page.locator('[data-testid="stDataFrame"]').first, i)
        page.get_by_role("heading", name="Pair detail").wait_for(timeout=60_000)
        settle(page)
        for label in ("Reveal image", "Reveal masked terms"):
            if page.get_by_text(label).count():
                page.get_by_text(label).click()
                settle(page)
        look()
    browser.open_page(page, "Queue")
    browser.click_grid_row(page, page.locator('[data-testid="stDataFrame"]').first, 0)
    page.get_by_role("heading", name="Pair detail").wait_for(timeout=60_000)
    page.get_by_label("Note (optional)").fill(hostile.strings["note"])
    page.get_by_label("Note (optional)").press("Enter")
    settle(page)
    page.get_by_role("button", name="Escalate").click()
    page.get_by_text("Decision recorded.").wait_for(timeout=30_000)
    look()
    page.get_by_role("button", name="Previous").click()  # back to the decided row: note and reviewer
    settle(page)
    # its history is drawn after the row (on a loaded machine, after settle returns): wait for the
    # note as text; shown as Markdown it would never appear, and the wait fails
    page.get_by_text(hostile.strings["note"]).first.wait_for(timeout=30_000)
    look()
    page.screenshot(path=str(tmp_path / "dashboard-hostile.png"), full_page=True)
    for title in ("Gallery", "Clusters", "More like this", "Quarantine", "Overview"):
        browser.open_page(page, title)
        browser.wait_drawn(page)
        if title == "Gallery":
            for box in page.get_by_text("Reveal", exact=True).all():
                box.click()
                settle(page)
        look()
    context.close()

    assert hostile.server.requests == [], "the browser fetched from the canary server"
    assert set(dom_hits) == {0}, "hostile strings became images, links or frames"
    own = (f"http://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/", "data:", "blob:", "about:")
    assert urls and [u for u in urls if not u.startswith(own)] == [], "a request left for another host"
    assert [u for u in urls if CANARY in u] == [], "a hostile relative URL was fetched from the dashboard"
    _visible_checks(hostile, "\n".join(texts))
    last = decision_history(load_run(str(hostile.path)))[-1]
    assert (last.decision, last.reviewer, last.note) == (
        "needs_escalation",
        hostile.strings["reviewer"],
        hostile.strings["note"],
    )
    assert (tmp_path / "dashboard-hostile.png").stat().st_size > 10_000
