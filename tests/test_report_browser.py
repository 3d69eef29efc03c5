"""report.html in headless Chromium (Debian's, driven by Playwright): every plot is drawn, no lexicon
term of the data appears unmasked in what the page shows, and the page makes no request but for
itself, on screen and printed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audit.report import write_report

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"

CHARTS_DRAWN = """() => [...document.querySelectorAll("figure.chart")].map(f => {
  const svg = f.querySelector("svg");
  if (!svg) return {id: f.id, ok: false, why: "no svg"};
  const box = svg.getBoundingClientRect();
  const marks = svg.querySelectorAll("path, rect, line, circle, text").length;
  const ok = box.width > 50 && box.height > 20 && marks > 3;
  return {id: f.id, ok: ok, why: `${box.width}x${box.height}, ${marks}`};
})"""
SHOWN_TEXT = """() => document.body.innerText + "\\n" +
  [...document.querySelectorAll("svg text")].map(t => t.textContent).join("\\n")"""


@pytest.fixture(scope="module")
def browser_run(sample_dir: Path, make_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LAION metadata (the similarity sweep and the NSFW cross-tab) and a webdataset (images:
    clusters, duplicates), tiny local CLIP, the sample's hash list."""
    from audit.pipelines.audit_run import run_audit

    out = tmp_path_factory.mktemp("browser") / "run"
    shards = [str(sample_dir / "webdataset"), str(sample_dir / "laion_metadata")]
    known_bad = {"images.known_bad_lists": [str(sample_dir / "known_bad.csv")]}
    run_audit(make_config(shards=shards, out=str(out), **known_bad))
    write_report(str(out))
    return out


def _lexicon_terms(run: Path) -> set[str]:
    """The lexicon terms the audit matched in the data (category:term (group) -> term)."""
    terms = set()
    for path in (run / "scores").glob("*.parquet"):
        for row in pq.read_table(path, columns=["lexicon_terms"]).column("lexicon_terms").to_pylist():
            terms |= {t.partition(":")[2].partition(" (")[0] for t in row or []}
    return terms


def _open(run: Path, *, media: str = "screen") -> tuple[dict, list[str]]:
    from playwright.sync_api import sync_playwright

    page_url = (run / "report" / "report.html").resolve().as_uri()
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(offline=True)
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))

            def route(r) -> None:
                (r.continue_() if r.request.url == page_url else r.abort())

            page.route("**/*", route)
            page.emulate_media(media=media)
            page.goto(page_url, wait_until="load")
            page.wait_for_timeout(300)  # anything late (an image, a font) would request now
            result = {"charts": page.evaluate(CHARTS_DRAWN), "text": page.evaluate(SHOWN_TEXT)}
            if media == "print":
                result["pdf"] = page.pdf(format="A4")
        finally:
            browser.close()
    return result, requests


@pytest.mark.parametrize("media", ["screen", "print"])
def test_every_plot_is_drawn_and_the_page_requests_nothing_but_itself(browser_run: Path, media: str) -> None:
    shown, requests = _open(browser_run, media=media)
    figures = json.loads((browser_run / "report" / "figures.json").read_text())
    expected = [c for ids in figures["charts"].values() for c in ids]
    assert "chart-sweep" in expected and "chart-nsfw-crosstab" in expected and "chart-clusters" in expected
    assert [c["id"] for c in shown["charts"]] == expected
    assert all(c["ok"] for c in shown["charts"]), [c for c in shown["charts"] if not c["ok"]]
    page_url = (browser_run / "report" / "report.html").resolve().as_uri()
    assert requests == [page_url]
    if media == "print":
        assert shown["pdf"][:5] == b"%PDF-" and len(shown["pdf"]) > 20_000


def test_no_lexicon_term_of_the_data_is_shown_unmasked(browser_run: Path) -> None:
    terms = _lexicon_terms(browser_run)
    assert {"nude", "massacre", "redneck"} <= terms
    shown, _ = _open(browser_run)
    text = shown["text"]
    for term in terms:
        assert not re.search(rf"(?<![\w]){re.escape(term)}(?![\w])", text, re.I), term
    assert "n***" in text and "m*******" in text


def test_the_sample_runs_report_draws_too(sample_run: Path, tmp_path: Path) -> None:
    """Random CLIP weights: no sweep, a banner; every other plot still drawn, nothing requested."""
    run = Path(shutil.copytree(sample_run, tmp_path / "run"))
    write_report(str(run))
    shown, requests = _open(run)
    assert shown["charts"] and all(c["ok"] for c in shown["charts"])
    assert "CLIP weights are RANDOM" in shown["text"] and "Not shown:" in shown["text"]
    assert requests == [(run / "report" / "report.html").resolve().as_uri()]
