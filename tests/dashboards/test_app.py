"""The review dashboard: Streamlit's AppTest in-process, and `streamlit run` driven by headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from audit.review import decision_history, load_run, render_blocked
from audit.schemas import CLIP_RANDOM_WARNING

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

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
    assert at.title[0].value == f"Review: {run.name}"
    assert [w.value for w in at.warning] == [CLIP_RANDOM_WARNING]
    assert at.dataframe[0].value["key"].tolist() == [f["key"] for f in flags]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["rows in"] == str(run.summary.rows_in)
    assert metrics["quarantined"] == str(run.summary.rows_quarantined)

    blocked = [f["key"] for f in flags if render_blocked(f)]
    if blocked:  # known-bad matches: no image element and no way to reveal one
        at.main.selectbox[0].select(blocked[0]).run()
        assert _image_caption(at) is None and not at.checkbox
        assert "never shown" in at.error[0].value
    shown = next(f["key"] for f in flags if not render_blocked(f))
    at.main.selectbox[0].select(shown).run()
    assert at.checkbox[0].label == "Reveal image" and not at.checkbox[0].value
    assert _image_caption(at) == "blurred"
    at.checkbox[0].check().run()
    assert _image_caption(at) == "revealed"

    at.sidebar.selectbox[0].select("high").run()
    high = [f["key"] for f in flags if f["severity"] in ("high", "critical")]
    assert at.dataframe[0].value["key"].tolist() == high

    key = at.main.selectbox[0].value
    assert all(b.disabled for b in at.button)  # no reviewer name yet
    at.text_input(key="reviewer").input("ann").run()
    at.button(key=f"confirm_harmful-{key}").click().run()
    assert not at.exception
    rows = decision_history(run)
    assert [(r.key, r.decision, r.reviewer) for r in rows] == [(key, "confirm_harmful", "ann")]
    assert at.success[0].value == f"recorded confirm_harmful for {key} by ann"
    table = at.dataframe[0].value
    assert dict(zip(table["key"], table["decision"], strict=True)) == {
        k: "confirm_harmful" if k == key else "" for k in high
    }


def _wait_healthy(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on port {port} within {timeout}s")


def test_dashboard_renders_in_headless_chromium(review_run: Path, free_port: int, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    # what `make dashboard` runs: the CLI, which serves on 127.0.0.1 by default
    cmd = [sys.executable, "-m", "audit.cli", "dashboard", "--run", str(review_run), "--port", str(free_port)]
    env = {**os.environ, "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    log = tmp_path / "streamlit.log"
    with open(log, "w") as out:  # a file, not a pipe nobody reads, which could fill and block the server
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_healthy(free_port, proc, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1400})
                page.goto(f"http://127.0.0.1:{free_port}/", timeout=60_000)
                page.get_by_text("Detail: ").wait_for(timeout=60_000)
                # the script has finished its run once the "Running..." widget is gone
                page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=60_000)
                # widgets whose code loads lazily show grey placeholders until their chunk arrives
                for testid in ("stDataFrame", "stMetric", "stSelectbox", "stTextInput", "stButton"):
                    page.locator(f'[data-testid="{testid}"]').first.wait_for(timeout=60_000)
                page.wait_for_load_state("networkidle", timeout=60_000)
                text = page.inner_text("body")
                images = page.locator('[data-testid="stImage"] img').count()
                page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    run = load_run(str(review_run))
    assert f"Review: {run.name}" in text
    assert CLIP_RANDOM_WARNING in text
    first = run.flags.slice(0, 1).to_pylist()[0]
    assert f"Detail: {first['key']}" in text
    if first.get("render_blocked"):  # a known-bad match: no picture, only the reason
        assert images == 0 and "never shown" in text and "Reveal image" not in text
    else:
        assert images == 1 and "blurred" in text
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
