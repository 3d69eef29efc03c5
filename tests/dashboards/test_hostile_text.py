"""Dataset- and user-controlled strings reach the reviewer's screen as text, never as Markdown or HTML.

The run's keys, captions, URLs, run name, shard id, reason code, and a reviewer's name and note all
carry Markdown images, links and raw <img> tags pointing at a canary server on 127.0.0.1. If any of
them were rendered, the browser would fetch from it (unblurred, even on a known-bad row).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.review import decision_history, load_run, record_decision

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
CANARY = "mmaudit-canary"  # in every hostile URL (conftest's CanaryServer.hostile)

pytestmark = pytest.mark.slow

# element types that show text as text (st.text, st.code, st.dataframe's canvas, an image's pixels)
PLAIN_ELEMENTS = {"text", "code", "dataframe", "imgs"}
# widgets whose options and value are plain text but whose label and help are Markdown
OPTION_WIDGETS = {"selectbox", "multiselect", "text_input"}


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


def _assert_no_markup(at) -> list[str]:
    """No element that renders Markdown or HTML holds a hostile string; returns the plain texts shown."""
    texts = []
    for el in _elements(at._tree):
        if el.type in PLAIN_ELEMENTS:
            if el.type in ("text", "code"):
                texts.append(el.value)
            continue
        if el.type in OPTION_WIDGETS:
            rendered = f"{el.label} {el.help or ''} {getattr(el, 'placeholder', '')}"
        else:
            rendered = _shown_fields(el.proto)
        assert CANARY not in rendered, f"{el.type} renders a hostile string as Markdown: {rendered[:300]}"
    return texts


def test_app_shows_hostile_strings_only_as_plain_text(hostile, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(sys, "argv", [str(APP), "--run", str(hostile.path)])
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    shown = _assert_no_markup(at)
    options = at.main.selectbox[0].options
    assert len(options) == 4
    for option in options:
        at.main.selectbox[0].select(option).run()
        assert not at.exception
        shown += _assert_no_markup(at)
        if at.checkbox:  # a row whose image may be shown: reveal it too
            at.checkbox[0].check().run()
            shown += _assert_no_markup(at)
    at.text_input(key="reviewer").input(hostile.strings["reviewer"]).run()
    note = next(t for t in at.text_input if t.label.startswith("Note"))
    note.input(hostile.strings["note"]).run()
    next(b for b in at.button if b.label == "needs_escalation").click().run()
    assert not at.exception
    shown += _assert_no_markup(at)

    visible = "\n".join(shown)
    for what, value in hostile.strings.items():
        assert value in visible, f"the {what} is not shown as text"
    last = decision_history(load_run(str(hostile.path)))[-1]
    assert (last.reviewer, last.note) == (hostile.strings["reviewer"], hostile.strings["note"])
    assert hostile.server.requests == []


def _select_option(page, index: int, settle) -> None:
    page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').first.click()
    page.locator('[role="listbox"] [role="option"]').nth(index).click()
    settle(page)


def _canary_elements(page) -> int:
    return page.locator(f'img[src*="{CANARY}"], a[href*="{CANARY}"], iframe[src*="{CANARY}"]').count()


def test_browser_fetches_nothing_for_hostile_strings(
    hostile, serve_dashboard, chromium, settle_page, tmp_path: Path
) -> None:
    settle = settle_page
    port = serve_dashboard(hostile.path)
    urls: list[str] = []
    texts: list[str] = []
    dom_hits: list[int] = []  # images, links and frames built from hostile strings, per page state
    context = chromium.new_context(viewport={"width": 1400, "height": 2600})
    context.on("request", lambda r: urls.append(r.url))  # every frame and worker of the page
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=60_000)
    settle(page)
    # the hostile reason as a filter: listed in the open dropdown, then shown as the chosen chip
    page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"]').first.click()
    page.locator('[role="listbox"] [role="option"]').filter(has_text="offensive reason").click()
    page.keyboard.press("Escape")
    settle(page)
    texts.append(page.inner_text("body"))
    dom_hits.append(_canary_elements(page))
    for i in range(4):  # every flagged row, its image revealed where it may be shown
        _select_option(page, i, settle)
        reveal = page.get_by_text("Reveal image")
        if reveal.count():
            reveal.click()
            settle(page)
        texts.append(page.inner_text("body"))
        dom_hits.append(_canary_elements(page))
    _select_option(page, 0, settle)
    for label, value in (
        ("Reviewer name", hostile.strings["reviewer"]),
        ("Note (optional)", hostile.strings["note"]),
    ):
        page.get_by_label(label).fill(value)
        page.get_by_label(label).press("Enter")
        settle(page)
    page.get_by_role("button", name="needs_escalation").click()
    settle(page)
    page.get_by_text("Decision recorded.").wait_for(timeout=30_000)
    texts.append(page.inner_text("body"))
    dom_hits.append(_canary_elements(page))
    page.screenshot(path=str(tmp_path / "dashboard-hostile.png"), full_page=True)
    context.close()

    assert hostile.server.requests == [], "the browser fetched from the canary server"
    assert set(dom_hits) == {0}, "hostile strings became images, links or frames"
    own = (f"http://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/", "data:", "blob:", "about:")
    assert urls and [u for u in urls if not u.startswith(own)] == [], "a request left for another host"
    assert [u for u in urls if CANARY in u] == [], "a hostile relative URL was fetched from the dashboard"
    visible = "\n".join(texts)
    for what, value in hostile.strings.items():
        assert value in visible, f"the {what} is not visible as text"
    last = decision_history(load_run(str(hostile.path)))[-1]
    assert (last.decision, last.reviewer, last.note) == (
        "needs_escalation",
        hostile.strings["reviewer"],
        hostile.strings["note"],
    )
    assert (tmp_path / "dashboard-hostile.png").stat().st_size > 10_000
