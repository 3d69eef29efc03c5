"""Streamlit review dashboard: widgets and layout only; every read and write is in audit.review.

Run as a script: `streamlit run dashboards/app.py -- --run runs/sample` (or `mmaudit dashboard`).

Nothing from the data or from users (keys, captions, URLs, run names, shard ids, reasons, reviewer
names, notes, error messages that quote them) goes through an element that renders Markdown or HTML
(title, caption, markdown, write, alerts, labels): they go to st.text, st.dataframe or selectbox
options, which show text as text. So a caption such as `![x](http://host/x.png)` cannot make the
reviewer's browser fetch anything. Alerts, titles and labels carry fixed strings only.
"""

from __future__ import annotations

import argparse
import sys

import streamlit as st

from audit.dashboard_auth import load_auth, require_auth_if_exposed
from audit.dashboards.login import require_login
from audit.errors import AuditError
from audit.render_policy import may_render
from audit.review import (
    DECISIONS,
    UNDECIDED,
    decision_history,
    filter_flags,
    flag_row,
    flags_frame,
    format_scores,
    load_decisions,
    load_image,
    load_run,
    record_decision,
)
from audit.schemas import CLIP_RANDOM_WARNING, SEVERITIES


def script_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--run", default="runs/sample")
    parser.add_argument("--credentials", default=None)
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
except AuditError as e:
    fail("The dashboard cannot start.", str(e))
login_name = require_login(auth) if auth else None  # stops here until logged in: nothing of the run yet

try:
    run = load_run(args.run)
except AuditError as e:
    fail("The run folder cannot be opened.", str(e))

st.title("Review")
st.text(f"run: {run.name}")
if not run.summary.clip_meaningful:
    st.warning(CLIP_RANDOM_WARNING, icon="⚠️")
s = run.summary
cols = st.columns(4)
cols[0].metric("rows in", s.rows_in)
cols[1].metric("scored", s.rows_scored)
cols[2].metric("quarantined", s.rows_quarantined)
cols[3].metric("flagged", s.rows_flagged)
st.text(f"rows in {s.rows_in} = scored {s.rows_scored} + quarantined {s.rows_quarantined}")

with st.sidebar:
    st.header("Filters")
    reasons = st.multiselect("Reasons (none = all)", sorted(s.flags_by_reason))
    min_severity = st.selectbox("Minimum severity", SEVERITIES, index=0)
    decision = st.selectbox("Decision", ["any", UNDECIDED, *DECISIONS], index=0)

decisions = load_decisions(run)
shown = filter_flags(
    run.flags, reasons, min_severity, None if decision == "any" else decision, decisions=decisions
)
st.subheader("Flagged pairs")
st.text(f"{shown.num_rows} of {run.flags.num_rows} shown")
st.dataframe(flags_frame(shown, decisions), hide_index=True, width="stretch")

row_ids = shown.column("row_id").to_pylist()
if not row_ids:
    st.info("No flagged pairs match these filters.")
    st.stop()

# rows are picked by row_id (shard:row); keys repeat across shards and are only a label
row_id = st.selectbox("Flagged row (shard:row)", row_ids)
row = flag_row(run, row_id)
st.subheader("Detail")
st.text(f"row {row_id}\nkey: {row['key']}")
left, right = st.columns([1, 2])
with left:
    if not may_render(row):
        st.error("This image is never shown: the row matched a known-bad list or a never-render rule.")
    else:
        # keyed per row, so revealing one image never reveals the next one
        reveal = st.checkbox("Reveal image", key=f"reveal-{row_id}")
        try:
            image = load_image(run, row_id, blur=not reveal)
        except AuditError as e:
            st.info("No image to show.")
            st.text(str(e))
        else:
            st.image(image, caption="revealed" if reveal else "blurred")
with right:
    st.text(f"severity: {row['severity']}\nreasons: {', '.join(row['reasons'])}")
    st.text(f"caption: {'(none)' if row['caption'] is None else row['caption']}")
    st.text(f"url: {row['url']}")
    st.text(f"scores: {format_scores(row['scores'])}")
    latest = decisions.get(row_id)
    if latest:
        st.text(f"latest decision: {latest.decision} by {latest.reviewer}\nnote: {latest.note}")
    else:
        st.text("latest decision: none (undecided)")

    if login_name is not None:  # the name comes from the login, never from a free-text box
        reviewer = login_name
        st.text(f"reviewing as {reviewer}")
    else:
        reviewer = st.text_input("Reviewer name", key="reviewer")
    note = st.text_input("Note (optional)", key=f"note-{row_id}")
    buttons = st.columns(len(DECISIONS))
    for col, choice in zip(buttons, DECISIONS, strict=True):
        if col.button(choice, key=f"{choice}-{row_id}", disabled=not reviewer.strip()):
            saved = record_decision(run, row_id, choice, reviewer, note)
            # shown after the rerun, which redraws the table and latest decision with the new row
            st.session_state["flash"] = f"recorded {saved.decision} for {row_id} by {saved.reviewer}"
            st.rerun()
    if flash := st.session_state.pop("flash", None):
        st.success("Decision recorded.")
        st.text(flash)
    if not reviewer.strip():
        st.caption("Enter your name to record a decision.")
    history = decision_history(run, row_id)
    if history:
        st.dataframe([vars(h) for h in history], hide_index=True)
