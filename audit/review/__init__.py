"""Everything the review dashboard reads and writes: the run, queues, thumbnails, details, decisions.

The dashboard holds widgets only; this package is the tested surface, in small modules:
``run`` (opening a run, its DuckDB views, single rows), ``queue`` (filtered, sorted, paged flags),
``decisions`` (append-only decisions in RUN/decisions.db, bulk, export), ``images`` (blurred
thumbnails through the safe decoder), ``details`` (scores with their scorers, duplicates, clusters,
neighbours, kNN expansion), ``overview`` (aggregates), ``safety`` (masked terms, reveal counts).
"""

from audit.review.decisions import (
    DECISION_LABELS,
    DECISIONS,
    DECISIONS_TABLE_SCHEMA,
    UNDECIDED,
    Decision,
    DecisionLog,
    DecisionRow,
    decision_history,
    decisions_table,
    export_decisions,
    load_decisions,
    record_decision,
    record_decisions,
)
from audit.review.images import (
    BLUR_RADIUS,
    IMAGELESS_FORMATS,
    THUMB_MAX_SIDE,
    ImageUnavailableError,
    load_image,
    load_thumbnails,
    render_blocked,
    shard_spec,
)
from audit.review.run import (
    NEVER_RENDER_SQL,
    ReviewRun,
    filter_flags,
    flag_row,
    flags_frame,
    format_scores,
    latest_run,
    load_run,
    severity_rank,
)

__all__ = [
    "BLUR_RADIUS",
    "DECISIONS",
    "DECISIONS_TABLE_SCHEMA",
    "DECISION_LABELS",
    "IMAGELESS_FORMATS",
    "NEVER_RENDER_SQL",
    "THUMB_MAX_SIDE",
    "UNDECIDED",
    "Decision",
    "DecisionLog",
    "DecisionRow",
    "ImageUnavailableError",
    "ReviewRun",
    "decision_history",
    "decisions_table",
    "export_decisions",
    "filter_flags",
    "flag_row",
    "flags_frame",
    "format_scores",
    "latest_run",
    "load_decisions",
    "load_image",
    "load_run",
    "load_thumbnails",
    "record_decision",
    "record_decisions",
    "render_blocked",
    "severity_rank",
    "shard_spec",
]
