"""Gallery: thumbnails of the current filter, blurred until revealed (grayscale from the sidebar),
selectable for a bulk decision or as seeds of "more like this"."""

from __future__ import annotations

import streamlit as st

from audit.dashboards import data, widgets
from audit.dashboards.state import OpenRow, Review, flash, open_detail, review, selected
from audit.review import ImageUnavailableError, record_decisions

PER_PAGE = (12, 24, 48)
COLUMNS = 6


def render(r: Review) -> None:
    run = r.run
    st.title("Gallery")
    f, sort = widgets.filter_panel(r)
    v = data.version(run)
    total = data.queue_count(run, run.url, f, sort, v)
    if note := flash():
        st.success("Decision recorded.")
        st.text(note)
    top = st.columns([1, 3])
    size = top[0].selectbox(
        "Thumbnails per page", PER_PAGE, index=1, key="gallery-size", persist_state="session"
    )
    pages = max(1, -(-total // size))
    sig = abs(hash((f, sort, size)))  # a new filter, sort or page size starts at its first page
    with top[1]:
        number = st.pagination(pages, key=f"gallery-page-{sig}", max_visible_pages=9)
    offset = (min(number, pages) - 1) * size
    rows = data.queue_page(run, run.url, f, sort, offset, size, v).to_pylist()
    if not rows:
        st.info("No flagged pairs match these filters.")
        return
    chosen = selected()
    for row in rows:  # the boxes ticked in the last interaction, before anything counts them
        ticked = st.session_state.get(f"gallery-select-{row['row_id']}")
        if ticked is not None:
            (chosen.add if ticked else chosen.discard)(row["row_id"])
    revealed = {row["row_id"] for row in rows if st.session_state.get(f"gallery-reveal-{row['row_id']}")}
    thumbs = widgets.thumbnails(r, rows, revealed)
    for rid in revealed:
        if not isinstance(thumbs.get(rid), ImageUnavailableError):
            r.reveals.reveal(rid)
    st.text(f"{total} flagged pairs match; {len(chosen)} selected")
    for start in range(0, len(rows), COLUMNS):
        for col, row in zip(st.columns(COLUMNS), rows[start : start + COLUMNS], strict=False):
            rid = row["row_id"]
            with col:
                got = thumbs[rid]
                if isinstance(got, bytes):
                    st.image(got, caption="revealed" if rid in revealed else "blurred", width="stretch")
                else:
                    st.text(f"no image: {got}")
                st.text(f"{rid}\n{row['severity']}: {', '.join(row['reasons'])}")
                if isinstance(got, bytes) or rid in revealed:
                    st.checkbox("Reveal", key=f"gallery-reveal-{rid}")
                st.checkbox("Select", value=rid in chosen, key=f"gallery-select-{rid}")
                if st.button("Open", key=f"gallery-open-{rid}"):
                    open_detail(OpenRow(rid, offset + rows.index(row), "queue", f, sort))

    buttons = st.columns(2)
    if buttons[0].button("Select all on this page", key="gallery-select-all"):
        for row in rows:
            chosen.add(row["row_id"])
            st.session_state[f"gallery-select-{row['row_id']}"] = True
        st.rerun()
    if buttons[1].button("Clear the selection", key="gallery-select-none"):
        for rid in list(chosen):
            st.session_state.pop(f"gallery-select-{rid}", None)
        chosen.clear()
        st.rerun()

    def decide(decision: str, note: str) -> None:
        written = record_decisions(run, sorted(chosen), decision, r.reviewer, note)
        flash(f"{decision} recorded for {written} selected rows by {r.reviewer}")
        for rid in list(chosen):
            st.session_state.pop(f"gallery-select-{rid}", None)
        chosen.clear()

    st.subheader("Decide the selected rows")
    widgets.decision_buttons(
        r, "gallery-bulk", decide, count=len(chosen), what=f"{len(chosen)} rows selected"
    )


if __name__ == "__main__":
    render(review())
