"""The review dashboard: Streamlit's AppTest in-process, and `mmaudit dashboard` in headless Chromium."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from audit.render_policy import may_render
from audit.review import decision_history, load_run
from audit.schemas import CLIP_RANDOM_WARNING

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"

pytestmark = pytest.mark.slow


def _image_caption(at) -> str | None:
    images = at.get("image")
    return images[0].proto.imgs[0].caption if len(images) else None


def test_app_shows_flags_and_warning_and_records_a_decision(
    review_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    # what `streamlit run app.py -- --run RUN` hands the script
    monkeypatch.setattr(sys, "argv", [str(APP), "--run", str(review_run)])
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    run = load_run(str(review_run))
    flags = run.flags.to_pylist()
    assert at.title[0].value == "Review"
    assert f"run: {run.name}" in [t.value for t in at.text]
    assert [w.value for w in at.warning] == [CLIP_RANDOM_WARNING]
    assert at.dataframe[0].value["row_id"].tolist() == [f["row_id"] for f in flags]
    assert at.main.selectbox[0].options == [f["row_id"] for f in flags]  # rows picked by row_id
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["rows in"] == str(run.summary.rows_in)
    assert metrics["quarantined"] == str(run.summary.rows_quarantined)

    blocked = [f["row_id"] for f in flags if not may_render(f)]
    assert blocked  # the sample plants known-bad matches: no image element and no way to reveal one
    at.main.selectbox[0].select(blocked[0]).run()
    assert _image_caption(at) is None and not at.checkbox
    assert "never shown" in at.error[0].value
    shown = next(f["row_id"] for f in flags if may_render(f))
    at.main.selectbox[0].select(shown).run()
    assert at.checkbox[0].label == "Reveal image" and not at.checkbox[0].value
    assert _image_caption(at) == "blurred"
    at.checkbox[0].check().run()
    assert _image_caption(at) == "revealed"

    at.sidebar.selectbox[0].select("high").run()
    high = [f["row_id"] for f in flags if f["severity"] in ("high", "critical")]
    assert at.dataframe[0].value["row_id"].tolist() == high

    row_id = at.main.selectbox[0].value
    assert all(b.disabled for b in at.button)  # no reviewer name yet
    at.text_input(key="reviewer").input("ann").run()
    at.button(key=f"confirm_harmful-{row_id}").click().run()
    assert not at.exception
    rows = decision_history(run)
    assert [(r.row_id, r.decision, r.reviewer) for r in rows] == [(row_id, "confirm_harmful", "ann")]
    assert at.success[0].value == "Decision recorded."
    assert f"recorded confirm_harmful for {row_id} by ann" in [t.value for t in at.text]
    table = at.dataframe[0].value
    assert dict(zip(table["row_id"], table["decision"], strict=True)) == {
        r: "confirm_harmful" if r == row_id else "" for r in high
    }


def test_dashboard_renders_in_headless_chromium(
    review_run: Path, serve_dashboard, chromium, settle_page, tmp_path: Path
) -> None:
    port = serve_dashboard(review_run)  # what `make dashboard` runs: the CLI, on 127.0.0.1 by default
    page = chromium.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
    page.get_by_text("Detail").wait_for(timeout=60_000)
    settle_page(page)
    # widgets whose code loads lazily show grey placeholders until their chunk arrives
    for testid in ("stDataFrame", "stMetric", "stSelectbox", "stTextInput", "stButton"):
        page.locator(f'[data-testid="{testid}"]').first.wait_for(timeout=60_000)
    page.wait_for_load_state("networkidle", timeout=60_000)
    text = page.inner_text("body")
    images = page.locator('[data-testid="stImage"] img').count()
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    run = load_run(str(review_run))
    assert "Review" in text and f"run: {run.name}" in text
    assert CLIP_RANDOM_WARNING in text
    first = run.flags.slice(0, 1).to_pylist()[0]
    assert f"row {first['row_id']}" in text
    if not may_render(first):  # a known-bad match: no picture, only the reason
        assert images == 0 and "never shown" in text and "Reveal image" not in text
    else:
        assert images == 1 and "blurred" in text
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
