"""Widgets shared by the pages: the queue's filter panel, the decision buttons, a blurred image, a
masked caption, and the queue table.

Labels, titles, captions and alerts here are fixed strings: they render Markdown. Anything from the
data or from users (keys, captions, reasons, shard ids, reviewer names, notes, error messages) goes to
st.text, st.dataframe or a widget's options, which show it as text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import pyarrow as pa
import streamlit as st

from audit.dashboards import data
from audit.dashboards.state import Review, queue_filter, queue_sort, set_queue_filter, set_queue_sort
from audit.render_policy import may_render
from audit.report_mask import Masker
from audit.review import DECISION_LABELS, DECISIONS, UNDECIDED, ImageUnavailableError, load_thumbnails
from audit.review.images import is_cached, prefetch
from audit.review.queue import QueueFilter, QueueSort
from audit.review.safety import marked_caption, term_spans
from audit.schemas import SEVERITIES

ANY = "any"
NO_SCORE = "(no score filter)"
AHEAD = 10  # queue rows after the open one whose thumbnails are read with it
NEVER_SHOWN = "This image is never shown: the row matched a known-bad list or a never-render rule."


def filter_panel(r: Review) -> tuple[QueueFilter, QueueSort]:
    """The queue's filters and sort in the sidebar; their values last for the session."""
    fx = data.facets(r.run, r.run.url)
    keep = {"persist_state": "session"}
    with st.sidebar:
        st.header("Filters")
        reasons = st.multiselect("Reasons (none = all)", list(fx.reasons), key="f.reasons", **keep)
        min_severity = st.selectbox("Minimum severity", list(SEVERITIES), key="f.min_severity", **keep)
        decision = st.selectbox("Decision", [ANY, UNDECIDED, *DECISIONS], key="f.decision", **keep)
        text = st.text_input("Caption contains", key="f.text", **keep)
        shards = st.multiselect("Shards (none = all)", list(fx.shards), key="f.shards", **keep)
        clusters = (
            st.multiselect("Clusters (none = all)", list(fx.clusters), key="f.clusters", **keep)
            if fx.clusters
            else []
        )
        score = st.selectbox("Score range", [NO_SCORE, *fx.scores], key="f.score", **keep)
        low = high = None
        if score != NO_SCORE:
            low = st.number_input("Score at least", value=None, key="f.score_lo", **keep)
            high = st.number_input("Score at most", value=None, key="f.score_hi", **keep)
        st.header("Order")
        sorts = ["severity", "row", *(f"score:{s}" for s in fx.scores)]
        by = st.selectbox("Sort by", sorts, key="f.sort", **keep)
        descending = st.toggle("Descending", value=True, key="f.desc", **keep)
    f = QueueFilter(
        reasons=tuple(reasons),
        min_severity=None if min_severity == SEVERITIES[0] else min_severity,
        score_ranges=((score, low, high),) if score != NO_SCORE else (),
        shards=tuple(shards),
        clusters=tuple(int(c) for c in clusters),
        decision=None if decision == ANY else decision,
        text=text.strip(),
    )
    sort = QueueSort(by, descending)
    set_queue_filter(f)
    set_queue_sort(sort)
    return f, sort


def current_filter() -> tuple[QueueFilter, QueueSort]:
    """The queue's filter and sort as the queue page last built them (pages without the panel)."""
    return queue_filter(), queue_sort()


def decision_buttons(
    r: Review, key: str, on_decide: Callable[[str, str], None], *, count: int = 1, what: str = ""
) -> None:
    """Note box and one button per decision; a click calls ``on_decide(decision, note)`` before the
    rerun it starts (a callback: the next run already shows the result, one run instead of two).
    ``what`` names the rows a bulk decision covers (shown as text)."""
    if what:
        st.text(what)
    note_key = f"note-{key}"
    st.text_input("Note (optional)", key=note_key)
    cols = st.columns(len(DECISIONS))
    disabled = not r.reviewer or count == 0
    for col, choice in zip(cols, DECISIONS, strict=True):
        col.button(
            DECISION_LABELS[choice], key=f"{choice}-{key}", disabled=disabled,
            on_click=_decided, args=(on_decide, choice, note_key),
        )  # fmt: skip
    if not r.reviewer:
        st.caption("Enter your name in the sidebar to record decisions.")


def _decided(on_decide: Callable[[str, str], None], choice: str, note_key: str) -> None:
    on_decide(choice, st.session_state.get(note_key) or "")


def image(r: Review, row: dict, key: str, *, ahead: Callable[[int], list[dict]] | None = None) -> None:
    """The row's thumbnail, blurred until the reveal box is ticked; never-render rows get no image.
    ``ahead(n)`` gives the next n rows of the queue: thumbnailed in the same read of their shards when
    this row's image has to be read, else in the background once the next few are not cached."""
    if not may_render(row):
        st.error(NEVER_SHOWN)
        return
    reveal = st.checkbox("Reveal image", key=f"reveal-{key}")
    rows = [row]
    if ahead is not None:
        if not is_cached(r.run, row):
            rows += [a for a in ahead(AHEAD) if a["row_id"] != row["row_id"]]
        else:  # off the page's path: the reviewer is looking at this one
            prefetch(r.run, lambda: ahead(AHEAD))
    got = load_thumbnails(r.run, rows, blur=not reveal, grayscale=r.grayscale, only=[row["row_id"]])[
        row["row_id"]
    ]
    if isinstance(got, ImageUnavailableError):
        st.info("No image to show.")
        st.text(str(got))
        return
    if reveal:
        r.reveals.reveal(row["row_id"])
    st.image(got, caption="revealed" if reveal else "blurred", width="stretch")


def thumbnails(
    r: Review, rows: Sequence[dict], revealed: set[str]
) -> dict[str, bytes | ImageUnavailableError]:
    """Thumbnails of many rows (one read per shard); those in ``revealed`` unblurred."""
    blurred = [row for row in rows if row["row_id"] not in revealed]
    shown = [row for row in rows if row["row_id"] in revealed]
    out = load_thumbnails(r.run, blurred, blur=True, grayscale=r.grayscale) if blurred else {}
    if shown:
        out.update(load_thumbnails(r.run, shown, blur=False, grayscale=r.grayscale))
    return out


def caption(masker: Masker, text: str | None, key: str) -> None:
    """The caption as text with lexicon terms in ⟦ ⟧, masked until the reveal box is ticked."""
    has_terms = bool(term_spans(masker, text))
    reveal = st.checkbox("Reveal masked terms", key=f"terms-{key}") if has_terms else False
    st.text(f"caption: {marked_caption(masker, text, reveal)}")


def queue_frame(masker: Masker, rows: pa.Table) -> pd.DataFrame:
    """A page of queue rows for st.dataframe: captions masked, lists and maps as text."""
    out = []
    for row in rows.to_pylist():
        out.append(
            {
                "row_id": row["row_id"],
                "severity": row["severity"],
                "reasons": ", ".join(row["reasons"]),
                "decision": row.get("latest_decision") or "",
                "caption": marked_caption(masker, row["caption"]),
                "key": row["key"],
                "cluster": row.get("cluster"),
                "scores": ", ".join(f"{k}={v:.3g}" for k, v in row["scores"] or []),
            }
        )
    columns = ["row_id", "severity", "reasons", "decision", "caption", "key", "cluster", "scores"]
    return pd.DataFrame(out, columns=columns)


def selected_row(event: object) -> int | None:
    """The row index a single-row st.dataframe selection points at, if any (the widget's return value
    or its session-state value)."""
    selection = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    rows = (selection.get("rows") if isinstance(selection, dict) else getattr(selection, "rows", None)) or []
    return int(rows[0]) if rows else None
