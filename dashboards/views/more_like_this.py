"""More like this: kNN expansion (`mmaudit expand`'s library code) from seed rows over the run's image
index; the rows found are listed as a queue and can be decided, flagged or not (a confirmed unflagged
row goes on the removal list as reviewer-confirmed)."""

from __future__ import annotations

import streamlit as st

from audit.dashboards import widgets
from audit.dashboards.state import OpenRow, Review, flash, open_detail, review, seeds, selected
from audit.errors import AuditError
from audit.review import details as d
from audit.review import record_decisions

RESULT = "mlt-result"


def render(r: Review) -> None:
    run = r.run
    st.title("More like this")
    if note := flash():
        st.success("Decision recorded.")
        st.text(note)
    if not d.has_index(run):
        st.info("This run has no image index: audit it with neighbours enabled to search for similar rows.")
        return
    confirmed = [row_id for row_id, dec in _latest(r).items() if dec == "confirm_harmful"]
    options = list(dict.fromkeys([*seeds(), *sorted(selected()), *confirmed]))
    if not options:
        st.info(
            "Select rows in the gallery, or press More like this on a row's detail page, to seed a search."
        )
        return
    chosen = st.multiselect("Seed rows", options, default=options[: min(len(options), 20)], key="mlt-seeds")
    how = st.radio("Search", ["nearest rows per seed", "every row within a similarity"], key="mlt-how")
    if how == "nearest rows per seed":
        k, min_similarity = int(st.number_input("Rows per seed", 1, 500, 20, key="mlt-k")), None
    else:
        k, min_similarity = None, float(st.slider("Cosine similarity at least", 0.5, 1.0, 0.9, key="mlt-sim"))
    if st.button("Find similar rows", key="mlt-find", disabled=not chosen):
        try:
            st.session_state[RESULT] = d.expand(run, chosen, k=k, min_similarity=min_similarity)
        except AuditError as e:
            st.error("The search failed.")
            st.text(str(e))
            return
    if RESULT not in st.session_state:
        return
    found, missing = st.session_state[RESULT]
    if missing:
        st.text(f"{len(missing)} seeds have no image embedding and were left out: {', '.join(missing[:10])}")
    rows = [row for row in found.to_pylist() if not row["never_render"]]
    flagged = [row["row_id"] for row in rows if row["flagged"]]
    st.text(f"{found.num_rows} rows found ({len(flagged)} of them flagged); click a row to open it")
    event = st.dataframe(
        found.drop_columns(["never_render"]).to_pandas(), hide_index=True, width="stretch",
        on_select="rerun", selection_mode="single-row", key="mlt-table",
    )  # fmt: skip
    if (i := widgets.selected_row(event)) is not None:
        open_detail(OpenRow(found.column("row_id")[i].as_py(), None, "more_like_this"))

    every = st.checkbox("Include the rows no rule flagged", value=True, key="mlt-unflagged")
    chosen_rows = [row["row_id"] for row in rows] if every else flagged
    what = f"{len(chosen_rows)} rows" if every else f"{len(chosen_rows)} flagged rows"

    def decide(decision: str, note: str) -> None:
        written = record_decisions(run, chosen_rows, decision, r.reviewer, note)
        flash(f"{decision} recorded for {written} similar rows by {r.reviewer}")
        st.session_state.pop(RESULT, None)

    st.subheader("Decide the rows found")
    widgets.decision_buttons(r, "mlt-bulk", decide, count=len(chosen_rows), what=what)


def _latest(r: Review) -> dict[str, str]:
    latest = r.run.decision_log.refresh()
    return dict(zip(latest.column("row_id").to_pylist(), latest.column("decision").to_pylist(), strict=True))


if __name__ == "__main__":
    render(review())
