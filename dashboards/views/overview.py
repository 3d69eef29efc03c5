"""Overview: what the run found, in counts and plots (Altair/Vega-Lite: data drawn as SVG text, no
tooltips), the random-weights warning, never-render rows (counted, listed by row id), decisions so far
and their export."""

from __future__ import annotations

import functools

import altair as alt
import pyarrow as pa
import streamlit as st

from audit.dashboards import data
from audit.dashboards.state import Review, review
from audit.review import export_decisions
from audit.review import queue as q
from audit.schemas import CLIP_RANDOM_WARNING, SEVERITIES

CHART_HEIGHT = 260


def _bar(table: pa.Table, x: str, y: str, *, color: str | None = None, sort: list | str = "-x") -> alt.Chart:
    chart = alt.Chart(table.to_pandas()).mark_bar()
    enc = {"x": alt.X(f"{x}:Q"), "y": alt.Y(f"{y}:N", sort=sort, title=None)}
    if color:
        enc["color"] = alt.Color(f"{color}:N", sort=list(SEVERITIES))
    return chart.encode(**enc).properties(height=CHART_HEIGHT)


def render(r: Review) -> None:
    run, s = r.run, r.run.summary
    st.title("Overview")
    st.text(f"run: {run.name}")
    if not s.clip_meaningful:
        st.warning(CLIP_RANDOM_WARNING, icon="⚠️")
    never = data.never_rendered_count(run, run.url)
    decided = data.decision_counts(run, run.url, data.version(run))
    cols = st.columns(6)
    cols[0].metric("rows in", s.rows_in)
    cols[1].metric("scored", s.rows_scored)
    cols[2].metric("quarantined", s.rows_quarantined)
    cols[3].metric("flagged", s.rows_flagged)
    cols[4].metric("never rendered", never)
    cols[5].metric("undecided", decided.get("undecided", 0))
    st.text(f"rows in {s.rows_in} = scored {s.rows_scored} + quarantined {s.rows_quarantined}")

    t = data.overview_tables(run, run.url)
    left, right = st.columns(2)
    with left:
        st.subheader("Flags by reason and severity")
        st.altair_chart(_bar(t["reason_severity"], "flags", "reason", color="severity"), width="stretch")
        st.subheader("Flag rate per shard")
        shards = t["shards"].slice(0, 40)
        st.altair_chart(_bar(shards, "flag_rate", "shard_id"), width="stretch")
        st.subheader("Quarantine by reason")
        if t["quarantine"].num_rows:
            st.altair_chart(_bar(t["quarantine"], "rows", "reason"), width="stretch")
        else:
            st.text("no quarantined rows")
    with right:
        st.subheader("Score distributions of flagged rows")
        hist = t["histograms"]
        if hist.num_rows:
            chart = (
                alt.Chart(hist.to_pandas())
                .mark_bar()
                .encode(x=alt.X("bin_start:Q", title=None), x2="bin_end:Q", y=alt.Y("flags:Q", title=None))
                .properties(height=80, width=150)
                .facet(facet=alt.Facet("score:N", title=None), columns=2)
                .resolve_scale(x="independent", y="independent")
            )
            st.altair_chart(chart)
        st.subheader("Flag rate per cluster")
        if t["clusters"].num_rows:
            st.altair_chart(_bar(t["clusters"], "flag_rate", "cluster"), width="stretch")
        else:
            st.text("no clusters in this run (neighbours disabled or too few rows)")
        st.subheader("Near-duplicates")
        if t["duplicates"].num_rows:
            st.dataframe(t["duplicates"].to_pandas(), hide_index=True)
        else:
            st.text("no duplicate groups in this run")

    st.subheader("Decisions")
    st.dataframe([{"decision": k, "rows": v} for k, v in decided.items()], hide_index=True)
    exports = st.columns(4)
    for col, (fmt, latest) in zip(
        exports, [("parquet", True), ("csv", True), ("parquet", False), ("csv", False)], strict=True
    ):
        name = f"decisions{'-latest' if latest else '-history'}.{fmt}"
        col.download_button(
            f"{'Latest' if latest else 'All'} decisions ({fmt})",
            data=functools.partial(export_decisions, run, fmt, latest),  # built on click
            file_name=name,
            key=f"export-{name}",
            on_click="ignore",
        )

    st.subheader("Never rendered")
    st.text(
        f"{never} flagged rows matched a known-bad list or a never-render rule: they are in no queue and "
        "never shown; only their row ids are listed (see report/authority_report.csv)."
    )
    if never:
        st.dataframe(q.never_rendered(run, 0, 1000).to_pandas(), hide_index=True)


if __name__ == "__main__":
    render(review())
