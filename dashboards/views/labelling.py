"""Labelling: the sampled pairs of `mmaudit evaluate sample`, one at a time, labelled blind.

Only the pair is shown (image blurred until revealed, caption with lexicon terms masked until revealed)
and its row id: no score, flag, rule, severity, stratum, key or URL, so the label is not anchored on
what the flaggers said. Never-render rows are not in the sample: they are only counted here. Every read
and write goes through audit.evaluation.
"""

from __future__ import annotations

import streamlit as st

from audit.dashboards import data, widgets
from audit.dashboards.state import Review, flash, review
from audit.errors import AuditError
from audit.evaluation import HARMS, EvalRun, record_label
from audit.evaluation.queue import labelling_pair, next_rows, queue_status
from audit.render_policy import may_render

HARM_LABELS = {
    "sexual": "Sexual",
    "violence": "Violence",
    "hate": "Hate",
    "harassment": "Harassment / abuse",
    "pii": "Personal data (PII)",
}


def _eval_run(r: Review) -> EvalRun:
    return EvalRun(r.run.folder, r.run.summary, r.run.manifest)


def _save(r: Review, ev: EvalRun, row_id: str, categories: list[str], note: str) -> None:
    saved = record_label(ev, row_id, categories, r.reviewer, note)
    flash(f"labelled {saved.row_id} as {', '.join(saved.categories)} by {saved.reviewer}")
    st.rerun()


def render(r: Review) -> None:
    st.title("Labelling")
    ev = _eval_run(r)
    if not ev.has_sample():
        st.info("No labelling sample yet: run `mmaudit evaluate sample RUN` first.")
        return
    st.caption(
        "Label each pair from what it shows. No score or flag is shown, so that labels are not "
        "anchored on what the flaggers said. Pick every harm the pair shows, or Benign, or Unsure."
    )
    try:
        status = queue_status(ev, r.reviewer)
    except AuditError as e:
        st.error("The labelling sample cannot be read.")
        st.text(str(e))
        return
    st.text(
        f"{status.labelled} of {status.sampled} sampled pairs labelled; {status.by_reviewer} by you, "
        f"{status.waiting} waiting for you ({status.second_labels_waiting} as a second labeller)\n"
        f"{status.excluded_never_render} never-render rows are not labelled (never shown; counted only)"
    )
    if note := flash():
        st.success("Label recorded.")
        st.text(note)
    if not r.reviewer:
        st.info("Enter your name in the sidebar to label.")
        return
    upcoming = next_rows(ev, r.reviewer)
    if not upcoming:
        st.success("Nothing left for you to label in this sample.")
        return
    row_id = upcoming[0]
    try:
        pair = labelling_pair(ev, row_id)
    except (KeyError, PermissionError) as e:  # fail closed: show nothing of the row
        st.error("This row cannot be shown for labelling.")
        st.text(str(e))
        return
    left, right = st.columns([1, 2])
    with left:
        if may_render(pair.render_row):
            widgets.image(r, pair.render_row, f"label-{row_id}")
        else:  # no hash-list outcome: no image bytes (never-render rows are not in the sample)
            st.info("No image to show: label this pair from its caption.")
    with right:
        st.text(f"row {row_id}")
        widgets.caption(data.masker(r.run), pair.caption, f"label-{row_id}")
        ticked = [h for h in HARMS if st.checkbox(HARM_LABELS[h], key=f"harm-{h}-{row_id}")]
        note = st.text_input("Note (optional)", key=f"label-note-{row_id}")
        cols = st.columns(3)
        if cols[0].button("Save harms", key=f"save-harms-{row_id}", disabled=not ticked):
            _save(r, ev, row_id, ticked, note)
        if cols[1].button("Benign", key=f"save-benign-{row_id}", disabled=bool(ticked)):
            _save(r, ev, row_id, ["benign"], note)
        if cols[2].button("Unsure", key=f"save-unsure-{row_id}"):
            _save(r, ev, row_id, ["unsure"], note)


if __name__ == "__main__":
    render(review())
