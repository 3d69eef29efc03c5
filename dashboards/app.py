"""Streamlit review dashboard: widgets and layout only; every read and write is in audit.review.

Run as a script: `streamlit run dashboards/app.py -- --run runs/sample` (or `mmaudit dashboard`).
"""

from __future__ import annotations

import argparse
import sys

import streamlit as st

from audit.errors import AuditError
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
    render_blocked,
)
from audit.schemas import CLIP_RANDOM_WARNING, SEVERITIES


def run_arg() -> str:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--run", default="runs/sample")
    # streamlit passes what follows its own `--`; drop a stray `--` so argparse still sees --run
    args, _ = parser.parse_known_args([a for a in sys.argv[1:] if a != "--"])
    return args.run


st.set_page_config(page_title="mmaudit review", layout="wide")
try:
    run = load_run(run_arg())
except AuditError as e:
    st.error(str(e))
    st.stop()

st.title(f"Review: {run.name}")
if not run.summary.clip_meaningful:
    st.warning(CLIP_RANDOM_WARNING, icon="⚠️")
s = run.summary
cols = st.columns(4)
cols[0].metric("rows in", s.rows_in)
cols[1].metric("scored", s.rows_scored)
cols[2].metric("quarantined", s.rows_quarantined)
cols[3].metric("flagged", s.rows_flagged)
st.caption(f"rows in {s.rows_in} = scored {s.rows_scored} + quarantined {s.rows_quarantined}")

with st.sidebar:
    st.header("Filters")
    reasons = st.multiselect("Reasons (none = all)", sorted(s.flags_by_reason))
    min_severity = st.selectbox("Minimum severity", SEVERITIES, index=0)
    decision = st.selectbox("Decision", ["any", UNDECIDED, *DECISIONS], index=0)

decisions = load_decisions(run)
shown = filter_flags(
    run.flags, reasons, min_severity, None if decision == "any" else decision, decisions=decisions
)
st.subheader(f"Flagged pairs ({shown.num_rows} of {run.flags.num_rows})")
st.dataframe(flags_frame(shown, decisions), hide_index=True, width="stretch")

keys = shown.column("key").to_pylist()
if not keys:
    st.info("No flagged pairs match these filters.")
    st.stop()

key = st.selectbox("Flagged key", keys)
row = flag_row(run, key)
st.subheader(f"Detail: {key}")
left, right = st.columns([1, 2])
with left:
    if render_blocked(row):
        st.error("Matched a known-bad list: this image is never shown.")
    else:
        # keyed per item, so revealing one image never reveals the next one
        reveal = st.checkbox("Reveal image", key=f"reveal-{key}")
        try:
            st.image(load_image(run, key, blur=not reveal), caption="revealed" if reveal else "blurred")
        except AuditError as e:
            st.info(str(e))
with right:
    st.markdown(f"**Severity** {row['severity']} · **reasons** {', '.join(row['reasons'])}")
    st.text(f"caption: {row['caption']}")
    st.text(f"url: {row['url']}")
    st.text(f"scores: {format_scores(row['scores'])}")
    latest = decisions.get(key)
    st.markdown(f"**Latest decision** {latest.decision} by {latest.reviewer}" if latest else "**Undecided**")

    reviewer = st.text_input("Reviewer name", key="reviewer")
    note = st.text_input("Note (optional)", key=f"note-{key}")
    buttons = st.columns(len(DECISIONS))
    for col, choice in zip(buttons, DECISIONS, strict=True):
        if col.button(choice, key=f"{choice}-{key}", disabled=not reviewer.strip()):
            saved = record_decision(run, key, choice, reviewer, note)
            # shown after the rerun, which redraws the table and latest decision with the new row
            st.session_state["flash"] = f"recorded {saved.decision} for {key} by {saved.reviewer}"
            st.rerun()
    if flash := st.session_state.pop("flash", None):
        st.success(flash)
    if not reviewer.strip():
        st.caption("Enter your name to record a decision.")
    history = decision_history(run, key)
    if history:
        st.dataframe([vars(h) for h in history], hide_index=True)
