"""With a login configured, the app draws nothing of the run before it; the reviewer is the login."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.dashboard_auth import CREDENTIALS_ENV, PASSWORD_ENV, USER_ENV
from audit.dashboards.state import PAGES
from audit.review import decision_history, load_run
from audit.review import queue as q
from audit.review.queue import QueueFilter

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
PASSWORD = "correct horse battery"
# a bcrypt hash (cost 4, to keep the tests fast) of PASSWORD
ANN_HASH = "$2b$04$CArJ6m1q462mPXC7KkeiNep/kIdTU5oou6VZRVQz8RNEHi2/DyTHy"
# what the login form itself is made of; the cookie manager is the auth library's hidden component
LOGIN_ELEMENTS = {"form", "subheader", "text_input", "button", "component_instance", "error"}

pytestmark = pytest.mark.slow


def _elements(node) -> Iterator:
    from streamlit.testing.v1.element_tree import Block

    if isinstance(node, Block):
        if node.type not in ("main", "sidebar", "event", "bottom", "root", "vertical", "form", None):
            yield node  # a layout block (columns, tabs...) is already something of the page
        for child in node.children.values():
            yield from _elements(child)
    else:
        yield node


def _assert_nothing_of_the_run(at, run_dir: Path) -> None:
    run = load_run(str(run_dir))
    flags = run.flags.to_pylist()
    secrets = {run.name, *(f["key"] for f in flags), *(f["caption"] for f in flags if f["caption"])}
    for el in _elements(at._tree):
        assert el.type in LOGIN_ELEMENTS, f"{el.type} is drawn before the login"
        shown = str(el.proto)
        leaked = [s for s in secrets if len(s) >= 4 and s in shown]
        assert not leaked, f"{el.type} shows {leaked} before the login"
    assert [t.label for t in at.text_input] == ["Username", "Password"]


def _app(run_dir: Path, monkeypatch: pytest.MonkeyPatch, *args: str):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(sys, "argv", [str(APP), "--run", str(run_dir), *args])
    return AppTest.from_file(str(APP), default_timeout=60).run()


def _login(at, username: str, password: str):
    at.text_input[0].input(username)
    at.text_input[1].input(password)
    return at.button[0].click().run()


@pytest.fixture
def exposed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The address `--address 0.0.0.0` hands Streamlit (AppTest binds nothing); no account variables."""
    from streamlit import config

    config.set_option("server.address", "0.0.0.0")  # conftest's autouse fixture puts it back
    for var in (PASSWORD_ENV, USER_ENV, CREDENTIALS_ENV):
        monkeypatch.delenv(var, raising=False)


def test_exposed_app_without_a_login_refuses_to_show_anything(
    review_run: Path, monkeypatch: pytest.MonkeyPatch, exposed: None
) -> None:
    at = _app(review_run, monkeypatch)
    assert not at.exception
    assert [e.value for e in at.error] == ["The dashboard cannot start."]
    assert "not a loopback address" in at.text[0].value
    assert not at.dataframe and not at.metric and not at.text_input


@pytest.mark.parametrize("source", ["password variable", "credentials file"])
def test_login_comes_first_and_names_the_reviewer(
    review_run: Path, monkeypatch: pytest.MonkeyPatch, exposed: None, tmp_path: Path, source: str
) -> None:
    args: tuple[str, ...] = ()
    if source == "password variable":
        monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
        monkeypatch.setenv(USER_ENV, "ann")
    else:
        creds = tmp_path / "reviewers.yaml"
        creds.write_text(f'users:\n  ann: "{ANN_HASH}"\n')
        args = ("--credentials", str(creds))
    at = _app(review_run, monkeypatch, *args)
    assert not at.exception
    _assert_nothing_of_the_run(at, review_run)

    at = _login(at, "ann", "wrong password")
    assert not at.exception
    assert [e.value for e in at.error] == ["Wrong username or password."]
    _assert_nothing_of_the_run(at, review_run)
    at = _login(at, "bob", PASSWORD)
    assert [e.value for e in at.error] == ["Wrong username or password."]
    _assert_nothing_of_the_run(at, review_run)

    at = _login(at, "ann", PASSWORD)
    assert not at.exception and "Wrong username or password." not in [e.value for e in at.error]
    assert at.title[0].value == "Overview"
    assert "Reviewer name" not in [t.label for t in at.text_input]  # no free-text name to claim
    assert "reviewing as ann" in [t.value for t in at.sidebar.text]
    row_id = q.row_ids(load_run(str(review_run)), QueueFilter())[0].as_py()
    at.switch_page(PAGES["queue"]).run()
    table = next(d for d in at.dataframe if d.key and d.key.startswith("queue-table"))
    at.session_state[table.key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert at.title[0].value == "Pair detail"
    at.switch_page(PAGES["detail"])
    at.button(key=f"confirm_harmful-{row_id}").click().run()
    assert not at.exception
    rows = decision_history(load_run(str(review_run)))
    assert [(r.row_id, r.decision, r.reviewer) for r in rows] == [(row_id, "confirm_harmful", "ann")]

    at.sidebar.button(key="mmaudit-logout").click().run()
    assert not at.exception
    _assert_nothing_of_the_run(at, review_run)


def test_browser_login_before_the_run_then_decisions_by_the_login(
    review_run: Path, serve_dashboard, chromium, settle_page, browser, tmp_path: Path
) -> None:
    run = load_run(str(review_run))
    first = q.row_ids(run, QueueFilter())[0].as_py()
    port = serve_dashboard(review_run, {PASSWORD_ENV: PASSWORD, USER_ENV: "ann"})
    urls: list[str] = []
    page = chromium.new_page(viewport={"width": 1400, "height": 2400})
    page.on("request", lambda r: urls.append(r.url))
    page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
    page.get_by_label("Username").wait_for(timeout=60_000)
    settle_page(page)
    before = page.inner_text("body")
    page.screenshot(path=str(tmp_path / "login.png"), full_page=True)
    assert page.locator('[data-testid="stDataFrame"], [data-testid="stMetric"]').count() == 0

    page.get_by_role("textbox", name="Username").fill("ann")
    page.get_by_role("textbox", name="Password").fill("wrong password")
    page.get_by_role("button", name="Login").click()
    page.get_by_text("Wrong username or password.").wait_for(timeout=30_000)
    settle_page(page)
    refused = page.inner_text("body")

    page.get_by_role("textbox", name="Username").fill("ann")
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    page.get_by_text("reviewing as ann").wait_for(timeout=60_000)
    settle_page(page)
    assert page.get_by_label("Reviewer name").count() == 0
    browser.open_page(page, "Queue")
    browser.click_grid_row(page, page.locator('[data-testid="stDataFrame"]').first, 0)
    page.get_by_role("heading", name="Pair detail").wait_for(timeout=60_000)
    page.get_by_text(f"row {first}").first.wait_for(timeout=60_000)
    after = page.inner_text("body")
    page.get_by_role("button", name="Escalate").click()
    page.get_by_text("Decision recorded.").wait_for(timeout=30_000)
    page.screenshot(path=str(tmp_path / "dashboard-logged-in.png"), full_page=True)

    for text in (before, refused):
        assert f"run: {run.name}" not in text and first not in text and "Queue" not in text
    assert f"run: {run.name}" in after and f"row {first}" in after
    assert [(r.row_id, r.decision, r.reviewer) for r in decision_history(run)] == [
        (first, "needs_escalation", "ann")
    ]
    own = (f"http://127.0.0.1:{port}/", "data:", "blob:", "about:")
    assert urls and [u for u in urls if not u.startswith(own)] == []
    assert (tmp_path / "login.png").stat().st_size > 5_000
