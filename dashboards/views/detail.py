"""Pair detail: the image (blurred until revealed), the caption with lexicon terms masked until revealed,
every score with its scorer and version, near-duplicates, cluster-mates, nearest neighbours, the
decision history; deciding moves to the next row of the queue the row was opened from."""

from __future__ import annotations

import streamlit as st

from audit.dashboards import data, widgets
from audit.dashboards.state import OpenRow, Review, flash, go, open_row, review, seeds, set_open_row
from audit.render_policy import never_render
from audit.review import decision_history, record_decision
from audit.review import details as d
from audit.review import queue as q


def _nav(r: Review, at: OpenRow) -> None:
    """Previous / next within the queue the row came from, and back to it."""
    cols = st.columns([1, 1, 1, 3])
    if at.position is None or at.queue_filter is None:
        if cols[2].button("Back to the queue", key="detail-back"):
            go("queue")
        return
    total = data.queue_count(r.run, r.run.url, at.queue_filter, at.sort, data.version(r.run))
    cols[3].text(f"row {at.position + 1} of {total} in the queue")
    cols[0].button("Previous", key="detail-prev", disabled=at.position == 0, on_click=_move, args=(r, at, -1))
    cols[1].button(
        "Next", key="detail-next", disabled=at.position + 1 >= total, on_click=_move, args=(r, at, 1)
    )
    if cols[2].button("Back to the queue", key="detail-back"):
        go("queue")


def _move(r: Review, at: OpenRow, step: int) -> None:
    """(A callback.) Open the row ``step`` places away in the queue."""
    assert at.position is not None and at.queue_filter is not None
    row_id = q.row_at(r.run, at.queue_filter, at.sort, at.position + step)
    if row_id is not None:
        set_open_row(OpenRow(row_id, at.position + step, at.source, at.queue_filter, at.sort))


def _decided(r: Review, at: OpenRow, decision: str, note: str) -> None:
    """(A callback.) Record the decision and open the next row of the queue."""
    saved = record_decision(r.run, at.row_id, decision, r.reviewer, note)
    message = f"recorded {saved.decision} for {saved.row_id} by {saved.reviewer}"
    if at.position is not None and at.queue_filter is not None:
        next_id, position = q.next_after_decision(r.run, at.queue_filter, at.sort, at.position, at.row_id)
        if next_id is not None:  # deciding moves to the next row
            set_open_row(OpenRow(next_id, position, at.source, at.queue_filter, at.sort))
        else:
            message += "; that was the last row of the queue"
    flash(message)


def render(r: Review) -> None:
    st.title("Pair detail")
    at = open_row()
    if at is None:
        st.info("Open a row from the queue, the gallery, a cluster or a list of similar rows.")
        return
    _nav(r, at)
    if note := flash():
        st.success("Decision recorded.")
        st.text(note)
    row = data.flag(r.run, at.row_id)
    if row is None:
        st.text(f"row {at.row_id}")
        st.info("This row is not flagged: it has no detail page (More like this decides it).")
        return
    if never_render(row):  # only counted and listed by row id
        st.text(f"row {at.row_id}")
        st.error(widgets.NEVER_SHOWN)
        return
    masker = data.masker(r.run)
    left, right = st.columns([1, 2])
    ahead = None
    if at.position is not None and at.queue_filter is not None:
        position, f, sort = at.position, at.queue_filter, at.sort

        def ahead(n: int) -> list[dict]:  # the next rows of the queue
            return q.page(r.run, f, sort, position + 1, n).to_pylist()

    with left:
        widgets.image(r, row, at.row_id, ahead=ahead)
    with right:
        st.text(f"row {at.row_id}\nkey: {row['key']}")
        st.text(f"severity: {row['severity']}\nreasons: {', '.join(row['reasons'])}")
        widgets.caption(masker, row["caption"], at.row_id)
        st.text(f"url: {row['url']}")
        history = decision_history(r.run, at.row_id)
        if history:
            last = history[-1]
            st.text(f"latest decision: {last.decision} by {last.reviewer}\nnote: {last.note}")
        else:
            st.text("latest decision: none (undecided)")
        widgets.decision_buttons(r, at.row_id, lambda decision, note: _decided(r, at, decision, note))
        if st.button("More like this", key=f"mlt-{at.row_id}"):
            if at.row_id not in seeds():
                seeds().append(at.row_id)
            go("more_like_this")

    reveal_terms = bool(st.session_state.get(f"terms-{at.row_id}"))
    tabs = st.tabs(["Scores", "Nearest neighbours", "Near-duplicates", "Cluster", "Decision history"])
    with tabs[0]:
        st.dataframe(d.score_details(r.run, row, masker, reveal_terms), hide_index=True, width="stretch")
    with tabs[1]:
        _neighbours(r, at)
    with tabs[2]:
        dups = d.duplicate_groups(r.run, at.row_id)
        if dups.num_rows:
            st.dataframe(dups.to_pandas(), hide_index=True, width="stretch")
        else:
            st.text("in no near-duplicate group")
    with tabs[3]:
        _cluster(r, at, row)
    with tabs[4]:
        if history:
            st.dataframe([vars(h) for h in history], hide_index=True, width="stretch")
        else:
            st.text("no decisions yet")


def _cluster(r: Review, at: OpenRow, row: dict) -> None:
    cluster = d.cluster_of(r.run, at.row_id, row["shard_id"])
    if cluster is None:
        st.text("no cluster (this run has none, or the row has no image embedding)")
        return
    st.text(f"cluster {cluster}")
    key = f"mates-{at.row_id}"
    if st.button("Show its flagged cluster-mates", key=f"mates-button-{at.row_id}"):
        st.session_state[key] = True
    if st.session_state.get(key):  # on demand: a join over the corpus' neighbours
        mates = data.cluster_mates(r.run, r.run.url, cluster, at.row_id, 20)
        st.text(f"{mates.num_rows} other flagged rows of cluster {cluster} (most severe first)")
        st.dataframe(mates.drop_columns(["never_render"]).to_pandas(), hide_index=True, width="stretch")


def _neighbours(r: Review, at: OpenRow) -> None:
    if not d.has_index(r.run):
        st.text("this run has no image index (audit with neighbours enabled)")
        return
    key = f"nn-{at.row_id}"
    if st.button("Find nearest neighbours", key=f"nn-button-{at.row_id}"):
        st.session_state[key] = d.nearest_neighbours(r.run, at.row_id, 10)
    if key not in st.session_state:
        return
    found = st.session_state[key]
    if found is None:
        st.text("this row has no image embedding in the index")
        return
    st.dataframe(found.drop_columns(["never_render"]).to_pandas(), hide_index=True, width="stretch")


if __name__ == "__main__":
    render(review())
