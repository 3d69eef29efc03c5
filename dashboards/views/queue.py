"""Queue: the flagged pairs of the current filter, sorted and paged by DuckDB; a click on a row opens
it; the whole filter result can be decided at once."""

from __future__ import annotations

import functools

import streamlit as st

from audit.dashboards import data, widgets
from audit.dashboards.state import OpenRow, Review, flash, open_detail, review
from audit.review import queue as q
from audit.review import record_decisions
from audit.review.images import prefetch

PAGE_SIZES = (25, 50, 100, 200)
PREFETCH = 10  # rows of a page whose thumbnails are read ahead
PENDING = "queue-open-pending"  # the row a click picked, opened first thing in the next run


def _picked(key: str, ids: list[str], offset: int, f, sort) -> None:
    i = widgets.selected_row(st.session_state.get(key))
    if i is not None:
        st.session_state[PENDING] = OpenRow(ids[i], offset + i, "queue", f, sort)


def render(r: Review) -> None:
    if (pending := st.session_state.pop(PENDING, None)) is not None:
        open_detail(pending)
    run = r.run
    st.title("Queue")
    f, sort = widgets.filter_panel(r)
    v = data.version(run)
    total = data.queue_count(run, run.url, f, sort, v)
    never = data.never_rendered_count(run, run.url)
    st.text(f"{total} flagged pairs match ({never} never-render rows are in no queue: see the overview)")
    if note := flash():
        st.success("Decision recorded.")
        st.text(note)
    top = st.columns([1, 3])
    size = top[0].selectbox("Rows per page", PAGE_SIZES, index=1, key="queue-size", persist_state="session")
    pages = max(1, -(-total // size))
    sig = abs(hash((f, sort, size)))  # a new filter, sort or page size starts at its first page
    with top[1]:
        number = st.pagination(pages, key=f"queue-page-{sig}", max_visible_pages=9)
    offset = (min(number, pages) - 1) * size
    rows = data.queue_page(run, run.url, f, sort, offset, size, v)
    if not rows.num_rows:
        st.info("No flagged pairs match these filters.")
        return
    st.text(f"rows {offset + 1}-{offset + rows.num_rows} of {total}; click a row to open it")
    ids = rows.column("row_id").to_pylist()
    table_key = f"queue-table-{sig}-{offset}"
    event = st.dataframe(
        widgets.queue_frame(data.masker(run), rows),
        hide_index=True,
        width="stretch",
        # a callback: the next run opens the row before drawing the queue again
        on_select=functools.partial(_picked, table_key, ids, offset, f, sort),
        selection_mode="single-row",
        key=table_key,
    )
    picked = widgets.selected_row(event)  # a selection set without the callback (AppTest)
    if picked is None:  # the first rows' images, read while the reviewer looks at the list
        prefetch(run, rows.slice(0, PREFETCH).to_pylist())
    with st.expander("Open a row by its id"):
        choice = st.selectbox("Row on this page", ids, key=f"queue-open-{offset}")
        if st.button("Open", key="queue-open-button"):
            picked = ids.index(choice)
    if picked is not None:
        open_detail(OpenRow(ids[picked], offset + picked, "queue", f, sort))

    with st.expander("Decide every row of this filter"):

        def decide_all(decision: str, note: str) -> None:
            written = record_decisions(run, q.row_ids(run, f, sort), decision, r.reviewer, note)
            flash(f"{decision} recorded for {written} rows by {r.reviewer}")

        confirm = st.checkbox("I have reviewed all of these rows", key="queue-bulk-confirm")
        widgets.decision_buttons(
            r, "queue-bulk", decide_all, count=total if confirm else 0, what=f"{total} rows in this filter"
        )


if __name__ == "__main__":
    render(review())
