"""Streamlit review dashboard: the entry point only (login, the run, the sidebar, the pages).

Run as a script: `streamlit run dashboards/app.py -- --run runs/sample` (or `mmaudit dashboard`,
`make dashboard`); without --run it opens the most recently finished run under runs/. Each page is a
module of dashboards/views/ (widgets and layout only); every read and write goes through audit.review.

Nothing from the data or from users (keys, captions, URLs, run names, shard ids, reasons, reviewer
names, notes, error messages that quote them) goes through an element that renders Markdown or HTML
(title, caption, markdown, write, alerts, labels): they go to st.text, st.dataframe or widget options,
which show text as text. So a caption such as `![x](http://host/x.png)` cannot make the reviewer's
browser fetch anything. Alerts, titles and labels carry fixed strings only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import streamlit as st

from audit.dashboard_auth import load_auth, require_auth_if_exposed
from audit.dashboards import data
from audit.dashboards.login import require_login
from audit.dashboards.state import PAGES, TITLES, Review, reveal_log, set_review
from audit.errors import AuditError
from audit.review import latest_run
from audit.review.safety import break_after


def script_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--run", default=None)  # default: the latest finished run under runs/
    parser.add_argument("--credentials", default=None)
    parser.add_argument("--break-after", default=None)  # revealed images before a break reminder
    # streamlit passes what follows its own `--`; drop a stray `--` so argparse still sees --run
    args, _ = parser.parse_known_args([a for a in sys.argv[1:] if a != "--"])
    return args


def fail(headline: str, detail: str) -> None:
    """A fixed headline in an alert (alerts render Markdown); the message, which may quote data, as text."""
    st.error(headline)
    st.text(detail)
    st.stop()


st.set_page_config(page_title="mmaudit review", layout="wide")
args = script_args()
try:
    auth = load_auth(args.credentials)
    # also when started by `streamlit run` directly, whose default address is every interface
    require_auth_if_exposed(st.get_option("server.address"), auth)
    limit = break_after(args.break_after)
except AuditError as e:
    fail("The dashboard cannot start.", str(e))
login_name = require_login(auth) if auth else None  # stops here until logged in: nothing of the run yet

try:
    run = data.open_run(args.run or latest_run())
except AuditError as e:
    fail("The run folder cannot be opened.", str(e))

with st.sidebar:
    st.text(f"run: {run.name}")
    if login_name is not None:  # the name comes from the login, never from a free-text box
        reviewer = login_name
        st.text(f"reviewing as {reviewer}")
    else:
        reviewer = st.text_input("Reviewer name", key="reviewer", persist_state="session").strip()
    grayscale = st.toggle("Grayscale images", key="grayscale", persist_state="session")
    safety = st.container()  # filled after the page: its reveals count at once
reveals = reveal_log(limit)
set_review(Review(run=run, reviewer=reviewer, from_login=login_name is not None, grayscale=grayscale,
                  reveals=reveals))  # fmt: skip
here = Path(__file__).parent
pages = [
    st.Page(path, title=TITLES[name], url_path=name, default=name == "overview")
    for name, path in PAGES.items()
    if (here / path).is_file()  # the labelling page comes with audit.evaluation
]
try:
    st.navigation(pages).run()
finally:  # also when the page stops early
    with safety:
        st.text(f"images revealed this session: {reveals.count}")
        if reveals.break_due:
            st.warning("Break reminder: you have revealed many images since your last break.", icon="⏸️")
            st.text(f"{reveals.since_break} revealed since the last break (reminder after {reveals.limit})")
            if st.button("I took a break", key="took-break"):
                reveals.took_break()
                st.rerun()
