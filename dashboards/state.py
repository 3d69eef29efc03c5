"""What a reviewer's session holds between script runs, and moving between pages.

Every page reads the session through ``review()``: the run (shared by all sessions of the server,
from Streamlit's resource cache), the reviewer (the login's name, or the name typed in the sidebar when
no login is configured), and the session's safety settings and reveal count. The queue's filter and
sort live here too, so the detail page's next/previous and the gallery follow the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from audit.review import ReviewRun
from audit.review.queue import QueueFilter, QueueSort
from audit.review.safety import RevealLog

# page name -> file, relative to app.py (st.navigation runs them; AppTest.switch_page takes them too)
PAGES = {
    "overview": "views/overview.py",
    "queue": "views/queue.py",
    "gallery": "views/gallery.py",
    "detail": "views/detail.py",
    "clusters": "views/clusters.py",
    "more_like_this": "views/more_like_this.py",
    "quarantine": "views/quarantine.py",
    "labelling": "views/labelling.py",  # audit.evaluation's blind labelling of the evaluation sample
}
TITLES = {
    "overview": "Overview",
    "queue": "Queue",
    "gallery": "Gallery",
    "detail": "Pair detail",
    "clusters": "Clusters",
    "more_like_this": "More like this",
    "quarantine": "Quarantine",
    "labelling": "Labelling",
}

_REVIEW = "mm.review"
_FILTER = "mm.filter"
_SORT = "mm.sort"
_OPEN = "mm.open"
_REVEALS = "mm.reveals"
_SELECTED = "mm.selected"
_SEEDS = "mm.seeds"
_FLASH = "mm.flash"


@dataclass
class Review:
    run: ReviewRun
    reviewer: str  # "" until a name is given (decisions are disabled until then)
    from_login: bool
    grayscale: bool
    reveals: RevealLog


@dataclass
class OpenRow:
    """The row the detail page shows and where it came from (a queue position, or none)."""

    row_id: str
    position: int | None = None
    source: str = "queue"  # queue | cluster | more_like_this | neighbours
    queue_filter: QueueFilter | None = None
    sort: QueueSort = field(default_factory=QueueSort)


def set_review(r: Review) -> None:
    st.session_state[_REVIEW] = r


def review() -> Review:
    return st.session_state[_REVIEW]


def reveal_log(limit: int) -> RevealLog:
    log = st.session_state.get(_REVEALS)
    if log is None:
        log = st.session_state[_REVEALS] = RevealLog(limit=limit)
    log.limit = limit
    return log


def queue_filter() -> QueueFilter:
    return st.session_state.get(_FILTER, QueueFilter())


def set_queue_filter(f: QueueFilter) -> None:
    st.session_state[_FILTER] = f


def queue_sort() -> QueueSort:
    return st.session_state.get(_SORT, QueueSort())


def set_queue_sort(s: QueueSort) -> None:
    st.session_state[_SORT] = s


def open_row() -> OpenRow | None:
    return st.session_state.get(_OPEN)


def selected() -> set[str]:
    """Row ids ticked in the gallery (or elsewhere): bulk decisions and "more like this" seeds."""
    return st.session_state.setdefault(_SELECTED, set())


def seeds() -> list[str]:
    return st.session_state.setdefault(_SEEDS, [])


def flash(message: str | None = None) -> str | None:
    """Set a one-line note for the next script run, or (no argument) take the pending one."""
    if message is not None:
        st.session_state[_FLASH] = message
        return None
    return st.session_state.pop(_FLASH, None)


def go(page: str) -> None:
    st.switch_page(PAGES[page])


def set_open_row(row: OpenRow) -> None:
    """The row the detail page shows next (from a callback: no page switch needed there)."""
    st.session_state[_OPEN] = row


def open_detail(row: OpenRow) -> None:
    set_open_row(row)
    go("detail")
