"""Quarantine: rows that could not be scored (neither a usable image nor a usable caption), by reason.
No image of a quarantined row is ever shown; a never-render one is listed by its row id only."""

from __future__ import annotations

import streamlit as st

from audit.dashboards import data
from audit.dashboards.state import Review, review
from audit.review import overview as o
from audit.review.safety import marked_caption

PAGE = 100


def render(r: Review) -> None:
    run = r.run
    st.title("Quarantine")
    counts = data.overview_tables(run, run.url)["quarantine"]
    st.text(f"{run.summary.rows_quarantined} rows quarantined")
    if not counts.num_rows:
        st.info("Nothing was quarantined in this run.")
        return
    st.dataframe(counts.to_pandas(), hide_index=True)
    reasons = st.multiselect(
        "Reasons (none = all)", counts.column("reason").to_pylist(), key="quarantine-reasons"
    )
    total = o.quarantine_count(run, reasons)
    pages = max(1, -(-total // PAGE))
    number = st.pagination(pages, key="quarantine-page")
    offset = (min(number, pages) - 1) * PAGE
    rows = o.quarantine_page(run, reasons, offset, PAGE).to_pylist()
    masker = data.masker(run)
    for row in rows:
        row["caption"] = marked_caption(masker, row["caption"]) if row["caption"] is not None else ""
    st.text(f"rows {offset + 1}-{offset + len(rows)} of {total}")
    st.dataframe(rows, hide_index=True, width="stretch")


if __name__ == "__main__":
    render(review())
