"""Streamlit caches around the review library: one ReviewRun per run folder per server, query results
per (run, filter, sort, page, decisions version), so a rerun that changes nothing queries nothing and a
new decision (by anyone) invalidates exactly the results that join decisions."""

from __future__ import annotations

import pyarrow as pa
import streamlit as st

from audit.report_mask import Masker
from audit.review import ReviewRun, flag_row, load_run
from audit.review import details as _details
from audit.review import overview as _overview
from audit.review import queue as _queue
from audit.review.queue import QueueFilter, QueueSort
from audit.review.safety import masker_for


@st.cache_resource(show_spinner=False)
def open_run(url: str) -> ReviewRun:
    return load_run(url)


def version(run: ReviewRun) -> int:
    """The newest decision id after reading what others appended: part of every cache key that
    depends on decisions."""
    run.decision_log.refresh()
    return run.decision_log.version


def masker(run: ReviewRun) -> Masker:
    return masker_for(run)


@st.cache_data(show_spinner=False, max_entries=8)
def facets(_run: ReviewRun, url: str) -> _queue.Facets:
    return _queue.facets(_run)


@st.cache_data(show_spinner=False, max_entries=256)
def queue_count(_run: ReviewRun, url: str, f: QueueFilter, sort: QueueSort, v: int) -> int:
    return _queue.count(_run, f, sort)


@st.cache_data(show_spinner=False, max_entries=128)
def queue_page(
    _run: ReviewRun, url: str, f: QueueFilter, sort: QueueSort, offset: int, limit: int, v: int
) -> pa.Table:
    return _queue.page(_run, f, sort, offset, limit)


def flag(run: ReviewRun, row_id: str) -> dict | None:
    try:
        return flag_row(run, row_id)
    except KeyError:
        return None


@st.cache_data(show_spinner=False, max_entries=8)
def never_rendered_count(_run: ReviewRun, url: str) -> int:
    return _queue.never_rendered_count(_run)


@st.cache_data(show_spinner=False, max_entries=8)
def overview_tables(_run: ReviewRun, url: str) -> dict[str, pa.Table]:
    """Aggregates that do not depend on decisions: computed once per run and server."""
    return {
        "reason_severity": _overview.by_reason_severity(_run),
        "histograms": _overview.score_histograms(_run),
        "shards": _overview.shard_rates(_run),
        "clusters": _overview.cluster_rates(_run),
        "duplicates": _overview.duplicate_counts(_run),
        "quarantine": _overview.quarantine_counts(_run),
    }


@st.cache_data(show_spinner=False, max_entries=16)
def decision_counts(_run: ReviewRun, url: str, v: int) -> dict[str, int]:
    return _overview.decision_counts(_run)


@st.cache_data(show_spinner=False, max_entries=16)
def cluster_ranking(_run: ReviewRun, url: str, v: int) -> pa.Table:
    return _details.cluster_ranking(_run)


@st.cache_data(show_spinner=False, max_entries=64)
def cluster_mates(_run: ReviewRun, url: str, cluster: int, row_id: str | None, limit: int) -> pa.Table:
    return _details.cluster_mates(_run, cluster, row_id, limit)
