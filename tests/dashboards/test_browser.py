"""`mmaudit dashboard` in headless Chromium (Debian's, via Playwright): a reviewer opens every page,
clicks a row in the queue, reveals its image, decides by clicking, and the decision is in decisions.db.
A screenshot of every page goes to the test's folder, and to docs/screenshots/ with
MMAUDIT_UPDATE_SCREENSHOTS=1 (so a test run leaves the checkout as it found it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from audit.review import decision_history, load_run
from audit.review import queue as q
from audit.review.queue import QueueFilter

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
UPDATE_DOCS = os.environ.get("MMAUDIT_UPDATE_SCREENSHOTS") == "1"
VIEWPORT = {"width": 1400, "height": 2000}  # tall: the app scrolls inside its own frame


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if UPDATE_DOCS:
        DOCS.mkdir(parents=True, exist_ok=True)
        # a 256-colour copy for the docs: the same picture at a fraction of the bytes
        Image.open(path).convert("RGB").quantize(256).save(DOCS / path.name, optimize=True)
    return path


def test_a_reviewer_clicks_through_every_page(
    review_run: Path, serve_dashboard, chromium, browser, tmp_path: Path
) -> None:
    run = load_run(str(review_run))
    queue = q.row_ids(run, QueueFilter()).to_pylist()
    port = serve_dashboard(review_run)  # what `make dashboard` runs: the CLI, on 127.0.0.1
    urls: list[str] = []
    page = chromium.new_page(viewport=VIEWPORT)
    page.on("request", lambda r: urls.append(r.url))
    page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
    page.get_by_role("heading", name="Overview").wait_for(timeout=60_000)
    browser.wait_drawn(page)
    shots = [_shot(page, tmp_path, "overview")]
    charts = "document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]').length"
    page.wait_for_function(f"() => {charts} >= 4", timeout=60_000)  # fails the test if they never come
    assert f"run: {run.name}" in page.inner_text("body")

    browser.open_page(page, "Queue")
    table = page.locator('[data-testid="stDataFrame"]').first
    table.wait_for(timeout=60_000)
    browser.wait_drawn(page)
    shots.append(_shot(page, tmp_path, "queue"))
    browser.click_grid_row(page, table, 0)  # the reviewer clicks the first row
    page.get_by_role("heading", name="Pair detail").wait_for(timeout=60_000)
    page.get_by_text(f"row 1 of {len(queue)} in the queue").wait_for(timeout=60_000)
    page.get_by_text(f"row {queue[0]}\nkey:").wait_for(timeout=60_000)
    page.get_by_label("Reviewer name").fill("ann")
    page.get_by_label("Reviewer name").press("Enter")
    browser.wait_drawn(page)
    assert page.get_by_text("blurred", exact=True).count() == 1
    shots.append(_shot(page, tmp_path, "detail"))
    page.get_by_text("Reveal image").click()
    page.get_by_text("revealed", exact=True).wait_for(timeout=60_000)
    page.get_by_text("images revealed this session: 1").wait_for(timeout=60_000)
    page.screenshot(path=str(tmp_path / "detail-revealed.png"), full_page=True)  # not for the docs

    page.get_by_role("button", name="Confirm harmful").click()
    page.get_by_text("Decision recorded.").wait_for(timeout=60_000)
    page.get_by_text(f"row {queue[1]}\nkey:").wait_for(timeout=60_000)
    assert [(h.row_id, h.decision, h.reviewer) for h in decision_history(run)] == [
        (queue[0], "confirm_harmful", "ann")
    ]
    assert page.get_by_text("blurred", exact=True).count() == 1  # the next row's image is blurred again

    browser.open_page(page, "Gallery")
    browser.wait_drawn(page)
    assert page.locator('[data-testid="stImage"]').count() == len(queue)
    shots.append(_shot(page, tmp_path, "gallery"))
    browser.open_page(page, "Clusters")
    browser.wait_drawn(page)
    shots.append(_shot(page, tmp_path, "clusters"))
    browser.open_page(page, "More like this")  # seeded with the row just confirmed
    page.get_by_role("button", name="Find similar rows").click()
    browser.wait_drawn(page)
    page.get_by_text("rows found").first.wait_for(timeout=60_000)
    shots.append(_shot(page, tmp_path, "more_like_this"))
    browser.open_page(page, "Quarantine")
    browser.wait_drawn(page)
    shots.append(_shot(page, tmp_path, "quarantine"))
    page.close()

    own = (f"http://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/", "data:", "blob:", "about:")
    assert urls and [u for u in urls if not u.startswith(own)] == []  # nothing leaves the machine
    for shot in shots:
        assert shot.stat().st_size > 10_000, shot
        assert not UPDATE_DOCS or (DOCS / shot.name).is_file()
