"""Dashboard fixtures: private copies of real audit runs (the shared sample run, and one whose every
dataset- and user-controlled string is hostile Markdown/HTML), the CLI-served dashboard, headless
Chromium, and a canary HTTP server that records every request a rendered string would make."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from audit.benchmarks.process_tree import stop_group
from audit.config import packaged_file
from audit.schemas import IMG2DATASET_PARQUET_SCHEMA

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def review_run(sample_run: Path, tmp_path: Path) -> Path:
    """The session's real sample run, copied so that decisions written here stay in this test."""
    return Path(shutil.copytree(sample_run, tmp_path / "sample"))


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _keep_main_module():
    """AppTest runs the app as the `__main__` module; multiprocessing's spawn re-runs whatever
    `__main__` points at in every new Dask worker, so later tests would start the dashboard there.
    Put the real `__main__` back after each dashboard test."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(autouse=True)
def _loopback_server_address():
    """AppTest serves nothing, but the app reads `server.address` to refuse an exposed server without a
    login; set it to what `mmaudit dashboard` passes by default. Tests of exposure set it themselves."""
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    yield
    config.set_option("server.address", before)


@dataclass
class Driver:
    """Drives the app in AppTest the way a reviewer clicks through it.

    AppTest keeps asking for the page that ``switch_page`` last named, also after the app itself
    moved (a click on a queue row opens the detail page), so ``on`` names the page the app is on.
    """

    monkeypatch: pytest.MonkeyPatch

    def start(self, run: Path, *args: str):
        from streamlit.testing.v1 import AppTest

        # what `streamlit run app.py -- --run RUN` hands the script
        self.monkeypatch.setattr(sys, "argv", [str(APP), "--run", str(run), *args])
        return AppTest.from_file(str(APP), default_timeout=90).run()

    def start_without_run(self):
        """`streamlit run app.py` with no --run: the app picks the latest run under ./runs."""
        from streamlit.testing.v1 import AppTest

        self.monkeypatch.setattr(sys, "argv", [str(APP)])
        return AppTest.from_file(str(APP), default_timeout=90).run()

    @staticmethod
    def on(at, page: str):
        from audit.dashboards.state import PAGES

        return at.switch_page(PAGES[page])

    def go(self, at, page: str):
        return self.on(at, page).run()

    @staticmethod
    def table(at, key_prefix: str):
        return next(d for d in at.dataframe if d.key and d.key.startswith(key_prefix))

    def click_row(self, at, key_prefix: str, index: int):
        """Select row ``index`` of a single-row-selection st.dataframe (the click a reviewer makes)."""
        table = self.table(at, key_prefix)
        at.session_state[table.key] = {"selection": {"rows": [index], "columns": [], "cells": []}}
        return at.run()


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch) -> Driver:
    return Driver(monkeypatch)


def wait_healthy(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dashboard exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on port {port} within {timeout}s")


@pytest.fixture
def serve_dashboard(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start `mmaudit dashboard --run RUN` (as `make dashboard` does) on a free port; return the port."""
    procs: list[subprocess.Popen] = []

    def serve(run: Path, env: dict[str, str] | None = None, *args: str) -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "audit.cli", "dashboard", "--run", str(run), "--port", str(port), *args]
        full_env = {**os.environ, "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none", **(env or {})}
        log = tmp_path / f"dashboard-{port}.log"
        with open(log, "w") as out:  # a file, not a pipe nobody reads, which could fill and block the server
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
            )
        procs.append(proc)
        wait_healthy(port, proc, log)
        return port

    yield serve
    for proc in procs:
        stop_group(proc)  # the CLI and the Streamlit server it started (its process group)


@pytest.fixture
def chromium() -> Iterator[object]:
    """Debian's headless Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def settle(page) -> None:
    """Wait for the script run a widget change starts, and for what it loads."""
    page.wait_for_timeout(400)  # the rerun starts a moment after the widget changes
    # the app's own record of its script run: the status widget is absent before a first run has
    # started too, so on a loaded machine a page could be read before its first run had finished
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', state="attached", timeout=60_000
    )
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=60_000)
    page.wait_for_load_state("networkidle", timeout=60_000)


@pytest.fixture
def settle_page() -> Callable[[object], None]:
    return settle


# st.dataframe draws on a canvas (glide-data-grid): rows are 35 px under a 35 px header, and a click
# in the row-marker column at the left selects the row, as a reviewer's click does
GRID_ROW_PX = 35


def click_grid_row(page, table, index: int) -> None:
    box = table.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + GRID_ROW_PX * (index + 1) + GRID_ROW_PX // 2)
    settle(page)


def open_page(page, title: str) -> None:
    """Follow the sidebar's navigation link to a page."""
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    settle(page)
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)


def wait_drawn(page) -> None:
    """Until the page is drawn: no placeholder of a widget whose code is still loading (grids, charts,
    buttons), every image loaded, nothing in flight."""
    settle(page)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=60_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('img')].every(i => i.complete)", timeout=60_000
    )
    page.wait_for_load_state("networkidle", timeout=60_000)
    settle(page)


@dataclass(frozen=True)
class BrowserHelpers:
    click_grid_row: Callable = click_grid_row
    open_page: Callable = open_page
    wait_drawn: Callable = wait_drawn


@pytest.fixture
def browser() -> BrowserHelpers:
    return BrowserHelpers()


# --- a run full of hostile strings --------------------------------------------------------------

CANARY = "mmaudit-canary"  # in every hostile URL, also the relative ones a browser would send home
# a 1x1 PNG: if anything ever loads a canary image, it really gets one
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


class CanaryServer:
    """An HTTP server on 127.0.0.1 that records every request it gets and answers each with an image."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG_1PX)))
                self.end_headers()
                self.wfile.write(PNG_1PX)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def hostile(self, tag: str) -> str:
        """Markdown image, Markdown link, autolink and raw HTML images, each pointing at this server."""
        base = f"http://127.0.0.1:{self.port}/{CANARY}"
        return (
            f"{tag} ![{tag}]({base}-{tag}-md.png) [{tag}]({base}-{tag}-link) <{base}-{tag}-auto> "
            f'<img src={base}-{tag}-html.png> <img src="{base}-{tag}-html2.png">'
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class HostileRun:
    path: Path
    server: CanaryServer
    strings: dict[str, str] = field(default_factory=dict)  # what -> the hostile string planted there
    canary: str = CANARY


# a file name cannot hold `//`, so a shard id can only point the browser at relative URLs: on the
# Streamlit server itself, which the browser test catches by the canary in the path
SHARD_STEM = f"shard ![s]({CANARY}-shard-md.png) <img src={CANARY}-shard-html.png>"


def _jpeg(rgb: tuple[int, int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.clip(rng.normal(0, 40, (96, 128, 3)) + np.array(rgb), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def build_hostile_run(root: Path, server: CanaryServer, make_config: Callable[..., object]) -> HostileRun:
    """Hostile rows (a caption with an image; a known-bad image; a caption with no image bytes) and a
    clean one, audited for real with a rules file whose extra reason is hostile too and fires on
    every captioned row."""
    from audit.pipelines.audit_run import run_audit

    h = server.hostile
    strings = {
        "run": h("run"),
        "key_image": h("key-image"),
        "key_bad": h("key-bad"),
        "key_noimage": h("key-noimage"),
        "caption_image": f"this cat is a piece of shit {h('caption-image')}",
        "caption_noimage": f"what a dumb bitch {h('caption-noimage')}",
        "url": f"http://127.0.0.1:{server.port}/{CANARY}-url.jpg {h('url')}",
        "reason": f"offensive {h('reason')}",
        "shard": SHARD_STEM,
    }
    bad = _jpeg((30, 60, 200), 7)
    rows = [
        (strings["key_image"], strings["caption_image"], _jpeg((200, 120, 40), 1), "success"),
        (strings["key_bad"], f"a blue square {h('caption-bad')}", bad, "success"),
        (strings["key_noimage"], strings["caption_noimage"], None, "failed_to_download"),
        ("clean", "a cup of coffee on a saucer", _jpeg((120, 90, 60), 3), "success"),
    ]
    cols: dict[str, list] = {name: [] for name in IMG2DATASET_PARQUET_SCHEMA.names}
    for key, caption, jpg, status in rows:
        values = {
            "key": key, "url": strings["url"], "caption": caption, "status": status,
            "error_message": None if jpg else h("error"), "width": 128 if jpg else None,
            "height": 96 if jpg else None, "original_width": 128 if jpg else None,
            "original_height": 96 if jpg else None, "exif": None,
            "sha256": hashlib.sha256(jpg).hexdigest() if jpg else None, "jpg": jpg,
        }  # fmt: skip
        for name, value in values.items():
            cols[name].append(value)
    shards = root / "shards"
    shards.mkdir()
    pq.write_table(pa.table(cols, schema=IMG2DATASET_PARQUET_SCHEMA), shards / f"{SHARD_STEM}.parquet")
    known_bad = root / "known_bad.csv"
    known_bad.write_text(f"algorithm,hash,label\nsha256,{hashlib.sha256(bad).hexdigest()},hostile-test\n")
    rules = yaml.safe_load(packaged_file("rules", "default.yaml").read_text())
    rules["rules"].append(
        {
            "id": "hostile-reason",
            "reason": strings["reason"],
            "severity": "medium",
            # fires on every row with a scored caption: the hostile reason is on each flagged row
            "all": [{"score": "text_offensive_prob", "op": ">=", "value": 0.0}],
        }
    )
    rules_file = root / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules))
    out = root / "run"
    cfg = make_config(
        shards=[str(shards)],
        out=str(out),
        name=strings["run"],
        rules=str(rules_file),
        **{"images.known_bad_lists": [str(known_bad)], "neighbours.enabled": False},
    )
    run_audit(cfg)
    return HostileRun(out, server, strings)


@pytest.fixture(scope="module")
def hostile_source(tmp_path_factory: pytest.TempPathFactory, make_config) -> Iterator[HostileRun]:
    server = CanaryServer()
    try:
        yield build_hostile_run(tmp_path_factory.mktemp("hostile"), server, make_config)
    finally:
        server.close()
