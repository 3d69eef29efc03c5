"""Clusters: k-means clusters of the run's image embeddings ranked by flag rate; pick one to see its
flagged rows, open them in the queue, or decide the whole cluster at once."""

from __future__ import annotations

import streamlit as st

from audit.dashboards import data, widgets
from audit.dashboards.state import OpenRow, Review, flash, go, open_detail, review, set_queue_filter
from audit.review import queue as q
from audit.review import record_decisions
from audit.review.queue import QueueFilter, QueueSort

SHOWN = 60  # cluster members listed on the page (the queue has them all)


def render(r: Review) -> None:
    run = r.run
    st.title("Clusters")
    if note := flash():
        st.success("Decision recorded.")
        st.text(note)
    ranking = data.cluster_ranking(run, run.url, data.version(run))
    if not ranking.num_rows:
        st.info("This run has no clusters (audit with neighbours enabled and enough rows).")
        return
    st.text(f"{ranking.num_rows} clusters, highest flag rate first; click one to review it")
    event = st.dataframe(
        ranking.to_pandas(), hide_index=True, width="stretch", on_select="rerun",
        selection_mode="single-row", key="clusters-table",
    )  # fmt: skip
    ids = ranking.column("cluster").to_pylist()
    picked = widgets.selected_row(event)
    current = st.session_state.get("clusters-current")
    choice = st.selectbox(
        "Cluster", ids, index=ids.index(current) if current in ids else 0, key="clusters-pick"
    )
    cluster = ids[picked] if picked is not None else choice
    st.session_state["clusters-current"] = cluster

    f = QueueFilter(clusters=(int(cluster),))
    sort = QueueSort()
    total = data.queue_count(run, run.url, f, sort, data.version(run))
    st.subheader("The cluster's flagged rows")
    st.text(f"cluster {cluster}: {total} flagged rows to review (never-render rows left out)")
    rows = data.queue_page(run, run.url, f, sort, 0, SHOWN, data.version(run))
    if rows.num_rows:
        members = st.dataframe(
            widgets.queue_frame(data.masker(run), rows), hide_index=True, width="stretch",
            on_select="rerun", selection_mode="single-row", key=f"cluster-rows-{cluster}",
        )  # fmt: skip
        if (i := widgets.selected_row(members)) is not None:
            open_detail(OpenRow(rows.column("row_id")[i].as_py(), i, "cluster", f, sort))
    if st.button("Open this cluster in the queue", key="clusters-to-queue"):
        st.session_state["f.clusters"] = [int(cluster)]
        set_queue_filter(f)
        go("queue")

    def decide(decision: str, note: str) -> None:
        written = record_decisions(run, q.row_ids(run, f, sort), decision, r.reviewer, note)
        flash(f"{decision} recorded for {written} rows of cluster {cluster} by {r.reviewer}")

    st.subheader("Decide the whole cluster")
    confirm = st.checkbox("I have reviewed this cluster", key=f"cluster-confirm-{cluster}")
    widgets.decision_buttons(
        r, f"cluster-{cluster}", decide, count=total if confirm else 0, what=f"{total} flagged rows"
    )


if __name__ == "__main__":
    render(review())
