"""The blind labelling queue: which sampled pair a reviewer labels next, and what of it may be shown.

A pair is shown as its image (blurred until revealed, only where audit.render_policy.may_render
allows) and its caption (lexicon terms masked until revealed), with its row id, and nothing else: no
score, flag, rule, severity, stratum, dataset key or URL, so labels are not anchored on what the
flaggers said. Never-render rows are not in the sample (counted in design.json, listed by row id in
excluded.parquet); a row that turns out never-render anyway is refused here (fail closed).

A reviewer is offered, in the sample's shuffled order, the rows nobody has labelled yet and the
double-label rows that exactly one other reviewer has labelled; never a row they labelled themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from audit.evaluation.files import EvalRun
from audit.evaluation.labels import latest_labels
from audit.render_policy import never_render


@dataclass(frozen=True)
class QueueStatus:
    sampled: int  # rows in the sample
    labelled: int  # rows with at least one label
    by_reviewer: int  # rows this reviewer labelled
    waiting: int  # rows this reviewer may label now
    second_labels_waiting: int  # of them, double-label rows another reviewer labelled first
    excluded_never_render: int  # frame rows left out of labelling: never shown


@dataclass(frozen=True)
class LabellingPair:
    """What the labelling page shows of a row: nothing but the pair (and the fields the render
    predicate needs, which the page never shows)."""

    row_id: str
    caption: str | None
    render_row: dict  # row_id, shard_id, row_index, known_bad_match, render_blocked: for thumbnails


def _waiting(run: EvalRun, reviewer: str) -> tuple[pa.Table, int, int, int]:
    """The sample rows ``reviewer`` may label now (in queue order), rows labelled by anyone, by them,
    and how many of the waiting ones are second labels."""
    sample = run.sample().sort_by("position")
    latest = latest_labels(run)
    by_row: dict[str, set[str]] = {}
    for row_id, who in zip(
        latest.column("row_id").to_pylist(), latest.column("reviewer").to_pylist(), strict=True
    ):
        by_row.setdefault(row_id, set()).add(who)
    ids = sample.column("row_id").to_pylist()
    double = sample.column("double_label").to_pylist()
    keep, second = [], 0
    for row_id, dbl in zip(ids, double, strict=True):
        who = by_row.get(row_id, set())
        if reviewer in who:
            keep.append(False)
        elif not who:
            keep.append(True)
        else:
            ok = bool(dbl) and len(who) == 1
            keep.append(ok)
            second += ok
    labelled = sum(1 for r in ids if by_row.get(r))
    mine = sum(1 for r in ids if reviewer in by_row.get(r, set()))
    return sample.filter(pa.array(keep, pa.bool_())), labelled, mine, second


def queue_status(run: EvalRun, reviewer: str) -> QueueStatus:
    waiting, labelled, mine, second = _waiting(run, reviewer.strip())
    excluded = int(run.design()["frame"]["rows_never_render_excluded"])
    return QueueStatus(run.sample().num_rows, labelled, mine, waiting.num_rows, second, excluded)


def next_rows(run: EvalRun, reviewer: str, limit: int = 1) -> list[str]:
    """Row ids ``reviewer`` should label next, in queue order (empty: nothing left for them)."""
    waiting = _waiting(run, reviewer.strip())[0]
    return waiting.column("row_id").slice(0, limit).to_pylist()


def labelling_pair(run: EvalRun, row_id: str) -> LabellingPair:
    """The pair of a sampled row; KeyError for a row not in the sample, PermissionError for a row that
    must never be rendered (it should not be in the sample at all)."""
    if not pc.any(pc.equal(run.sample().column("row_id"), row_id)).as_py():
        raise KeyError(f"{row_id!r} is not in the labelling sample of run {run.summary.run_name}")
    with run.db() as con:
        found = con.execute(
            f"SELECT s.row_id, s.shard_id, s.row_index, s.caption, s.known_bad_match, "
            f"f.reasons, f.render_blocked, f.known_bad_match AS flag_known_bad "
            f"FROM {run.scores_sql()} s LEFT JOIN {run.flags_sql()} f USING (row_id) WHERE s.row_id = ?",
            [row_id],
        ).fetchall()
    if not found:
        raise KeyError(f"{row_id!r} is not a scored row of run {run.summary.run_name}")
    rid, shard_id, row_index, caption, known_bad, reasons, blocked, flag_known_bad = found[0]
    policy = {"known_bad_match": known_bad, "render_blocked": blocked, "reasons": reasons or []}
    if never_render(policy) or flag_known_bad is True:
        raise PermissionError(f"{row_id}: a never-render row is not labelled (it is never shown)")
    render_row = {"row_id": rid, "shard_id": shard_id, "row_index": int(row_index),
                  "known_bad_match": known_bad, "render_blocked": False}  # fmt: skip
    return LabellingPair(rid, caption, render_row)
