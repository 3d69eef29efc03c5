"""Dashboard benchmark: a run folder with 1,000,000 flags, the real Streamlit server (`mmaudit
dashboard`) and Debian's Chromium driven by Playwright.

    python -m audit.benchmarks.dashboard --out bench/results/dashboard.json [--flags 1000000]

Measured in the browser, from the reviewer's action to the page drawn (the expected text on screen and
Streamlit's running indicator gone): a filter change to the rendered queue page, a click on a queue
row to its detail (image included), a decision to the next item. The Streamlit process's RSS is
sampled throughout (psutil). The query layer (the DuckDB calls those pages make) is timed in-process,
with the one-phase page query it replaced as the baseline measured in the same run, and a profile of
one queue page's library work. Targets: under 1 s each, the server under 1 GiB.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from audit.benchmarks.common import machine, write_json
from audit.benchmarks.process_tree import stop_group
from audit.benchmarks.synthetic_run import synth_run

TARGET_S = 1.0
TARGET_RSS_MIB = 1024
CHROMIUM = "/usr/bin/chromium"
GRID_ROW_PX = 35  # st.dataframe's row height (header included): where a click selects a row


def _timed(fn: Callable[[], object], repeats: int = 3) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4)}


def query_layer(run_dir: Path) -> dict[str, object]:
    """The DuckDB calls behind the three measured interactions, timed in this process."""
    from audit.review import details as d
    from audit.review import flag_row, load_run, load_thumbnails, record_decision
    from audit.review import queue as q
    from audit.review.queue import QueueFilter, QueueSort
    from audit.review.safety import marked_caption, masker_for

    run = load_run(str(run_dir))
    t0 = time.perf_counter()
    q.facets(run)
    first_open = time.perf_counter() - t0
    f0 = QueueFilter()
    n = q.count(run, f0)
    filters = {
        "all": f0,
        "reason": QueueFilter(reasons=("hateful-caption",)),
        "min_severity": QueueFilter(min_severity="high"),
        "caption_text": QueueFilter(text="cat dog"),
        "score_range": QueueFilter(score_ranges=(("text_hate_prob", 0.5, 0.9),)),
        "shard": QueueFilter(shards=("00007",)),
        "cluster": QueueFilter(clusters=(3,)),
        "undecided": QueueFilter(decision="undecided"),
    }
    out: dict[str, object] = {"first_open_s": round(first_open, 4), "queue_rows": n}

    def cold(fn: Callable[[], object]) -> Callable[[], object]:
        """``fn`` with the filter-result cache emptied first: a filter change's one scan."""

        def run_cold() -> object:
            run._queue_results = q.ResultCache()  # type: ignore[attr-defined]
            return fn()

        return run_cold

    for name, f in filters.items():
        # what the queue page does on a filter change (count and first page), then on paging
        out[f"filter_change[{name}]"] = _timed(
            cold(lambda f=f: (q.count(run, f), q.page(run, f, QueueSort(), 0, 50)))
        )
        out[f"next_page[{name}]"] = _timed(lambda f=f: q.page(run, f, QueueSort(), 50, 50))
    by_score = QueueSort("score:text_hate_prob")
    out["filter_change[sort by score]"] = _timed(
        cold(lambda: (q.count(run, f0, by_score), q.page(run, f0, by_score)))
    )
    out["next_page[last page]"] = _timed(lambda: q.page(run, f0, QueueSort(), n - 50, 50))
    # the baseline: the one-phase query (every column through the sort) that two-phase paging replaced
    cur = run.db()
    one_phase = (
        f"SELECT {', '.join(q.PAGE_COLUMNS)} FROM flags WHERE NOT never_render "
        "ORDER BY severity_rank DESC, pos LIMIT 50 OFFSET ?"
    )
    out["baseline_one_phase_page[last page]"] = _timed(
        lambda: cur.sql(one_phase, params=[n - 50]).to_arrow_table()
    )
    rid = q.row_at(run, f0, QueueSort(), 1234)
    row = flag_row(run, rid)
    masker = masker_for(run)
    out["flag_row"] = _timed(lambda: flag_row(run, rid))
    out["thumbnail[cold shard]"] = _timed(lambda: load_thumbnails(run, [row]), repeats=1)
    out["thumbnail[cached]"] = _timed(lambda: load_thumbnails(run, [row]))
    out["score_details"] = _timed(lambda: d.score_details(run, row, masker))
    out["duplicate_groups"] = _timed(lambda: d.duplicate_groups(run, rid))
    out["cluster_of"] = _timed(lambda: d.cluster_of(run, rid, row["shard_id"]))
    out["record_decision"] = _timed(lambda: record_decision(run, rid, "needs_escalation", "bench"))
    out["next_after_decision"] = _timed(
        lambda: q.next_after_decision(run, filters["undecided"], QueueSort(), 1234, rid)
    )

    # a profile of one queue page's library work: where the time goes
    prof = cProfile.Profile()
    prof.enable()
    q.count(run, filters["caption_text"])
    page = q.page(run, filters["caption_text"], QueueSort(), 0, 50)
    [marked_caption(masker, c) for c in page.column("caption").to_pylist()]
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(12)
    out["profile_queue_page"] = [line.strip() for line in buf.getvalue().splitlines() if line.strip()][:30]
    return out


# --- the real server and browser ---------------------------------------------------------------------


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(run_dir: Path, log: Path) -> Iterator[tuple[int, psutil.Process]]:
    """`mmaudit dashboard --run RUN` (what `make dashboard` runs); yields the port and the Streamlit
    server process (the CLI's child)."""
    port = _port()
    env = {**os.environ, "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    cmd = [sys.executable, "-m", "audit.cli", "dashboard", "--run", str(run_dir), "--port", str(port)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.3)
        server = next(
            c
            for c in psutil.Process(proc.pid).children(recursive=True)
            if "streamlit" in " ".join(c.cmdline())
        )
        yield port, server
    finally:
        stop_group(proc, grace_s=15)


class RssSampler:
    """Peak RSS of a process, sampled every 50 ms in a thread."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc, self.peak, self._stop = proc, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def now(self) -> int:
        return self.proc.memory_info().rss


_WATCH = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  window.__mmRan = false;
  window.__mmWatch?.disconnect();
  window.__mmWatch = new MutationObserver(() => {
    if (app.getAttribute('data-test-script-state') === 'running') window.__mmRan = true;
  });
  window.__mmWatch.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
_DONE = """t => window.__mmRan
  && document.querySelector('[data-testid="stApp"]').getAttribute('data-test-script-state') === 'notRunning'
  && document.body.innerText.includes(t)
  && [...document.querySelectorAll('[data-testid="stImage"] img')].every(i => i.complete && i.naturalWidth)
  && !document.querySelector('[data-testid="stSkeleton"]')"""


def _watch(page) -> None:
    """Before an action: note when the script run it starts begins."""
    page.evaluate(_WATCH)


def _until_drawn(page, text: str) -> None:
    """The run the action started has finished and its page is drawn: ``text`` on screen, every image
    loaded, no widget placeholder left."""
    page.wait_for_function(_DONE, arg=text, timeout=120_000, polling=10)


def _idle(page) -> None:
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stApp\"]')"
        "?.getAttribute('data-test-script-state') === 'notRunning'",
        timeout=120_000,
    )


def browser_timings(run_dir: Path, repeats: int, log: Path) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    from audit.review import load_run
    from audit.review import queue as q
    from audit.review.queue import QueueFilter, QueueSort

    run = load_run(str(run_dir))
    out: dict[str, object] = {}
    with serve(run_dir, log) as (port, server), RssSampler(server) as rss, sync_playwright() as pw:
        out["rss_mib_idle_server"] = round(rss.now() / 2**20, 1)
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        t0 = time.perf_counter()
        page.goto(f"http://127.0.0.1:{port}/queue", timeout=120_000)
        total = q.count(run, QueueFilter())
        page.wait_for_function("t => document.body.innerText.includes(t)", arg=f"{total} flagged pairs match",
                               timeout=120_000)  # fmt: skip
        _idle(page)
        out["first_queue_load_s"] = round(time.perf_counter() - t0, 3)
        page.get_by_label("Reviewer name").fill("bench")
        page.get_by_label("Reviewer name").press("Enter")
        page.wait_for_timeout(300)
        _idle(page)

        # filter change -> the rendered queue page; each step a different filter, from the sidebar. The
        # clock starts at the commit (Enter in the caption box, the click on a severity option), not
        # while Playwright types or opens the dropdown.
        steps: list[tuple[str, Callable[[], None], Callable[[], None], QueueFilter]] = []

        def type_text(value: str) -> tuple[Callable[[], None], Callable[[], None]]:
            box = page.get_by_label("Caption contains")
            return (lambda: box.fill(value)), (lambda: box.press("Enter"))

        def severity(value: str) -> tuple[Callable[[], None], Callable[[], None]]:
            def open_menu() -> None:
                page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').nth(0).click()
                page.locator('[role="listbox"] [role="option"]').first.wait_for(timeout=60_000)

            def pick() -> None:
                page.locator('[role="listbox"] [role="option"]').filter(has_text=value).first.click()

            return open_menu, pick

        words = ["cat dog", "red", "beach city", "sunset", "coffee cake", "night", "old new"]
        for i in range(repeats):
            w = words[i % len(words)]
            steps.append((f"caption text {w!r}", *type_text(w), QueueFilter(text=w)))
        steps.append(("caption text cleared", *type_text(""), QueueFilter()))
        steps.append(("minimum severity high", *severity("high"), QueueFilter(min_severity="high")))
        steps.append(("minimum severity info", *severity("info"), QueueFilter()))
        filter_times = []
        for name, prepare, commit, f in steps:
            want = f"{q.count(run, f)} flagged pairs match"
            prepare()
            _watch(page)
            t0 = time.perf_counter()
            commit()
            _until_drawn(page, want)
            filter_times.append({"step": name, "s": round(time.perf_counter() - t0, 3)})

        # row click -> detail (with its blurred image); then back to the queue for the next click
        grid = page.locator('[data-testid="stDataFrame"]').first
        click_times = []
        decision_times = []
        ids = q.page(run, QueueFilter(), QueueSort(), 0, 50).column("row_id").to_pylist()
        for i in range(repeats):
            grid = page.locator('[data-testid="stDataFrame"]').first
            grid.wait_for(timeout=120_000)
            box = grid.bounding_box()
            _watch(page)
            t0 = time.perf_counter()
            page.mouse.click(box["x"] + 12, box["y"] + GRID_ROW_PX * (i + 2) + GRID_ROW_PX // 2)
            _until_drawn(page, f"row {ids[i + 1]}\n")
            click_times.append(round(time.perf_counter() - t0, 3))
            # decision -> the next item drawn (with its image)
            nxt = ids[i + 2]
            _watch(page)
            t0 = time.perf_counter()
            page.get_by_role("button", name="Confirm harmful").click()
            _until_drawn(page, f"row {nxt}\n")
            decision_times.append(round(time.perf_counter() - t0, 3))
            _watch(page)
            page.get_by_role("button", name="Back to the queue").click()
            _until_drawn(page, f"{total} flagged pairs match")
        browser.close()
        out["rss_mib_end"] = round(rss.now() / 2**20, 1)
        out["rss_mib_peak"] = round(rss.peak / 2**20, 1)
    out["filter_change_to_queue_page_s"] = filter_times
    out["row_click_to_detail_s"] = click_times
    out["decision_to_next_item_s"] = decision_times
    return out


def _findings(qs: dict) -> list[str]:
    """What the profile and the query-layer timings say, in numbers from this run."""
    base, last = qs["baseline_one_phase_page[last page]"]["median_s"], qs["next_page[last page]"]["median_s"]
    text, allf = qs["filter_change[caption_text]"]["median_s"], qs["filter_change[all]"]["median_s"]
    score = qs["filter_change[sort by score]"]["median_s"]
    return [
        f"last page of {qs['queue_rows']} flags: the one-phase query (every column through the sort) "
        f"{base} s; the cached filter result's top-N plus a fetch of 50 rows by file position {last} s "
        f"({base / max(last, 1e-6):.0f}x)",
        f"a filter change is one scan of the columns it reads ({allf} s for no filter, {text} s for a "
        f"caption search, {score} s for a sort by a score: the ILIKE over every caption and the "
        "scores-map lookup dominate); paging, next and previous then query the cached result",
        f"a row's first image reads its whole shard once (sha256 check) and thumbnails the next queue "
        f"rows in the same pass: {qs['thumbnail[cold shard]']['median_s']} s cold, "
        f"{qs['thumbnail[cached]']['median_s']} s cached",
        "decisions, next and previous run in Streamlit callbacks, so each is one script run, not two",
    ]


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "median_s": round(statistics.median(times), 3),
        "p90_s": round(p90, 3),
        "max_s": round(max(times), 3),
        "n": len(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/dashboard.json")
    parser.add_argument("--flags", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--workdir", default=None, help="make the synthetic run under this folder")
    parser.add_argument("--summary", default=None, help="also write the summary (no per-step detail) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmaudit-bench-dashboard-", dir=args.workdir) as tmp:
        t0 = time.perf_counter()
        made = synth_run(Path(tmp), args.flags, args.shards)
        build_s = time.perf_counter() - t0
        queries = query_layer(made.path)
        # the query layer wrote decisions: start the browser part from a clean slate
        (made.path / "decisions.db").unlink(missing_ok=True)
        ui = browser_timings(made.path, args.repeats, Path(tmp) / "server.log")
    filt = [s["s"] for s in ui["filter_change_to_queue_page_s"]]  # type: ignore[index]
    results = {
        "filter_change_to_queue_page": _summary(filt),
        "row_click_to_detail": _summary(ui["row_click_to_detail_s"]),  # type: ignore[arg-type]
        "decision_to_next_item": _summary(ui["decision_to_next_item_s"]),  # type: ignore[arg-type]
    }
    doc = {
        "benchmark": "dashboard",
        "what": __doc__.strip().splitlines()[0],
        "machine": machine(),
        "flags": made.flags,
        "never_render_flags": made.never_render,
        "shards": made.shards,
        "synthetic_run_build_s": round(build_s, 1),
        "targets": {"interaction_s": TARGET_S, "server_rss_mib": TARGET_RSS_MIB},
        "results": results,
        "server_rss_mib": {k.removeprefix("rss_mib_"): v for k, v in ui.items() if k.startswith("rss_mib")},
        "first_queue_load_s": ui["first_queue_load_s"],
        # the median: on 2 cores shared with other jobs, single steps stall when they burst (max kept)
        "pass_rule": "median under the target; p90 and max reported beside it",
        "pass": {
            **{k: v["median_s"] < TARGET_S for k, v in results.items()},
            "server_rss": ui["rss_mib_peak"] < TARGET_RSS_MIB,  # type: ignore[operator]
        },
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],  # other jobs on the machine
        "findings": _findings(queries),
        "browser": ui,
        "query_layer": queries,
    }
    path = write_json(args.out, doc)
    if args.summary:
        keep = ("benchmark", "what", "machine", "load_average_1_5_15", "flags", "never_render_flags",
                "shards", "targets", "results", "pass_rule", "pass", "server_rss_mib", "first_queue_load_s",
                "findings")  # fmt: skip
        filters = {k: v for k, v in queries.items() if k.startswith(("filter_change", "next_page"))}
        write_json(args.summary, {**{k: doc[k] for k in keep}, "query_layer": filters,
                                  "command": "make bench-dashboard"})  # fmt: skip
    timings = ", ".join(f"{k} median {v['median_s']} s max {v['max_s']} s" for k, v in results.items())
    print(f"{path}: {timings}; server RSS peak {ui['rss_mib_peak']} MiB")


if __name__ == "__main__":
    main()
