"""The labelling sample: a seeded stratified draw over the run's scored rows, its weights recorded.

The frame is every scored row that may be shown to a labeller: quarantined rows (neither side usable)
and never-render rows (known-bad matches, never-render rules) are left out, counted, and the
never-render ones listed by row id in excluded.parquet. Every frame row falls in exactly one stratum:

- a flagged row in ``flagged:<rule>:band<i>of<B>``: ``<rule>`` is the rarest of the rules that fired on
  it (so a rare rule gets rows of its own), ``<i>`` the row's band among that stratum's rows by the
  rule's first numeric score (equal-count bands, 1 = nearest the threshold);
- an unflagged row in ``unflagged:<score>:near<share>`` when some score reaches ``share`` of its
  loosest threshold (``evaluation.near_miss``; the highest share reached, the first such score), else
  in ``unflagged:far``. Near misses are where a flagger's misses hide; sampling them apart is what lets
  recall be estimated for rare harms.

Rows are drawn within each stratum without replacement by a keyed hash of (seed, row id), so a draw is
reproducible and does not depend on file order; each drawn row's weight is N_h / n_h (the inverse of
its inclusion probability), what the Horvitz-Thompson estimates of audit.evaluation.estimates use. The
drawn rows are split dev/test within each stratum, a fraction is marked for a second labeller, and the
queue order is shuffled so strata do not show in it. Everything is computed in DuckDB over the Parquet
files; only the drawn rows come back to Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audit.config import EvaluationSettings
from audit.errors import InputFileError
from audit.evaluation.files import EXCLUDED_SCHEMA, SAMPLE_SCHEMA, EvalRun
from audit.evaluation.rules_measured import band_scores, is_numeric, sampled_rules, upward
from audit.evaluation.settings import design_settings
from audit.finalize import now
from audit.render_policy import NEVER_RENDER_REASONS
from audit.review.run import sql_literal
from audit.rules import Condition, Rule

DESIGN_VERSION = "1"
FAR = "unflagged:far"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _never_render_sql() -> str:
    """audit.render_policy.never_render over the joined scores (s) and flags (f) row."""
    reasons = ", ".join(sql_literal(r) for r in sorted(NEVER_RENDER_REASONS))
    return (
        "(coalesce(s.known_bad_match, false) OR coalesce(f.known_bad_match, false) OR "
        f"coalesce(f.render_blocked, false) OR coalesce(list_has_any(f.reasons, [{reasons}]), false))"
    )


def _share_sql(cond: Condition) -> str:
    """How near an unflagged row's score is to the threshold, as a share of it (1 = at it)."""
    col, t = _q(cond.score), float(cond.value)
    if upward(cond):
        return f"CAST({col} AS DOUBLE) / {t!r}" if t > 0 else "NULL"
    return f"{t!r} / nullif(CAST({col} AS DOUBLE), 0)" if t > 0 else "NULL"


def _band_sql(cond: Condition, shares: tuple[float, ...]) -> str:
    share = _share_sql(cond)
    if share == "NULL":
        return "0"
    steps = " + ".join(f"CASE WHEN ({share}) >= {s!r} THEN 1 ELSE 0 END" for s in shares)
    return f"coalesce({steps}, 0)"


@dataclass(frozen=True)
class DrawnSample:
    sample: pa.Table  # SAMPLE_SCHEMA
    excluded: pa.Table  # EXCLUDED_SCHEMA
    design: dict  # design.json


def draw_sample(run: EvalRun, settings: EvaluationSettings) -> DrawnSample:
    """Draw the labelling sample of ``run`` (nothing is written: see write_sample)."""
    rules = run.rules()
    strata_rules = sampled_rules(rules, run.summary)
    scores = run.scores_sql()
    with run.db() as con:
        present = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {scores}").fetchall()}
        bands = [c for c in band_scores(rules, run.summary) if c.score in present]
        joined = _joined_sql(run, scores)
        counts = dict(
            con.sql(
                f"SELECT r, count(*) FROM (SELECT unnest(fired) AS r FROM ({joined}) WHERE NOT never_render) "
                "GROUP BY r"
            ).fetchall()
        )
        priority = sorted((r for r in strata_rules if counts.get(r.id)), key=lambda r: (counts[r.id], r.id))
        strata_sql = _strata_sql(joined, priority, bands, settings, present)
        drawn = con.sql(f"SELECT * FROM ({strata_sql}) WHERE draw_rank <= wanted").to_arrow_table()
        summary = con.sql(
            f"SELECT stratum, count(*), min(band_value), max(band_value) FROM ({strata_sql}) GROUP BY stratum"
        ).fetchall()
        [totals] = con.sql(
            f"SELECT count(*), count(*) FILTER (WHERE never_render) FROM ({joined})"
        ).fetchall()
        excluded = con.sql(
            f"SELECT row_id, 'never_render' AS reason FROM ({joined}) WHERE never_render ORDER BY row_id"
        ).to_arrow_table()
    scored, never = int(totals[0]), int(totals[1])
    if scored - never == 0:
        raise InputFileError(
            f"{run.folder.url}: no scored row may be shown to a labeller (nothing to sample)"
        )
    sample = _finish(drawn, settings)
    strata = _strata_table(sample, summary)
    design = {
        "schema": "mmaudit.evaluation.design",
        "version": DESIGN_VERSION,
        "drawn_at": now(),
        "run_name": run.summary.run_name,
        "rules_hash": run.manifest.rules_hash,
        "config_hash": run.manifest.config_hash,
        "settings": design_settings(settings),
        "frame": {
            "rows_scored": scored,
            "rows_quarantined_excluded": run.summary.rows_quarantined,
            "rows_never_render_excluded": never,
            "rows": scored - never,
        },
        "sampled_rows": sample.num_rows,
        "dev_rows": int(np.sum(np.asarray(sample.column("split").to_pylist()) == "dev")),
        "double_label_rows": int(np.sum(sample.column("double_label").to_numpy(zero_copy_only=False))),
        "rule_priority": [r.id for r in priority],
        "band_thresholds": [{"score": c.score, "op": c.op, "threshold": float(c.value)} for c in bands],
        "strata": strata,
    }
    return DrawnSample(sample, excluded.cast(EXCLUDED_SCHEMA), design)


def _joined_sql(run: EvalRun, scores: str) -> str:
    return (
        f"SELECT s.*, f.rules AS fired, {_never_render_sql()} AS never_render "
        f"FROM {scores} s LEFT JOIN {run.flags_sql()} f USING (row_id)"
    )


def _driving(rule: Rule, present: set[str]) -> Condition | None:
    return next((c for c in rule.conditions if is_numeric(c) and c.score in present), None)


def _strata_sql(
    joined: str,
    priority: list[Rule],
    bands: list[Condition],
    settings: EvaluationSettings,
    present: set[str],
) -> str:
    """Every frame row's stratum and the drawn ones (rank within the stratum <= its sample size)."""
    primary = " ".join(f"WHEN list_contains(fired, {sql_literal(r.id)}) THEN {sql_literal(r.id)}"
                       for r in priority)  # fmt: skip
    primary_sql = f"CASE {primary} ELSE 'other' END" if priority else "'other'"
    # the primary rule's first numeric score orders its rows into bands (nearest the threshold first)
    value_cases, order_cases = [], []
    for r in priority:
        cond = _driving(r, present)
        if cond is not None:
            value = f"CAST({_q(cond.score)} AS DOUBLE)"
            value_cases.append(f"WHEN {sql_literal(r.id)} THEN {value}")
            order_cases.append(f"WHEN {sql_literal(r.id)} THEN {'' if upward(cond) else '-'}{value}")
    value_sql = f"CASE primary_rule {' '.join(value_cases)} ELSE NULL END" if value_cases else "NULL"
    order_sql = f"CASE primary_rule {' '.join(order_cases)} ELSE NULL END" if order_cases else "NULL"
    if bands:
        idx = [f"({_band_sql(c, settings.near_miss)})" for c in bands]
        near = f"greatest({', '.join(idx)})" if len(idx) > 1 else idx[0]
        which = " ".join(
            f"WHEN {i} = near THEN {sql_literal(c.score)}" for i, c in zip(idx, bands, strict=True)
        )
        shares = " ".join(
            f"WHEN {k + 1} THEN {sql_literal(f'{s:g}')}" for k, s in enumerate(settings.near_miss)
        )
        unflagged = (f"CASE WHEN near = 0 THEN {sql_literal(FAR)} ELSE 'unflagged:' || (CASE {which} END) "
                     f"|| ':near' || (CASE near {shares} END) END")  # fmt: skip
    else:
        near, unflagged = "0", sql_literal(FAR)
    n_flagged, n_near, n_far = (
        settings.flagged_per_stratum,
        settings.unflagged_per_stratum,
        settings.unflagged_far,
    )
    seed = sql_literal(f"{settings.seed}:")
    return f"""
    WITH j AS ({joined}),
    frame AS (SELECT * FROM j WHERE NOT never_render),
    flagged AS (SELECT row_id, {primary_sql} AS primary_rule, * EXCLUDE (row_id) FROM frame
                WHERE fired IS NOT NULL),
    banded AS (
        SELECT row_id, primary_rule, {value_sql} AS band_value,
               ntile({settings.flagged_bands}) OVER (
                   PARTITION BY primary_rule ORDER BY {order_sql} NULLS FIRST, row_id) AS band,
               count(*) OVER (PARTITION BY primary_rule) AS rule_rows
        FROM flagged),
    f_strata AS (
        SELECT row_id, 'flagged:' || primary_rule || ':band' ||
               CAST(CASE WHEN rule_rows < {settings.flagged_bands} THEN 1 ELSE band END AS VARCHAR) ||
               'of' || CAST(least({settings.flagged_bands}, rule_rows) AS VARCHAR) AS stratum,
               band_value, {n_flagged} AS wanted
        FROM banded),
    u_near AS (SELECT row_id, {near} AS near, * EXCLUDE (row_id) FROM frame WHERE fired IS NULL),
    u_strata AS (
        SELECT row_id, {unflagged} AS stratum, NULL::DOUBLE AS band_value,
               CASE WHEN near = 0 THEN {n_far} ELSE {n_near} END AS wanted
        FROM u_near),
    all_strata AS (SELECT * FROM f_strata UNION ALL SELECT * FROM u_strata)
    SELECT row_id, stratum, band_value, wanted,
           count(*) OVER (PARTITION BY stratum) AS stratum_rows,
           row_number() OVER (PARTITION BY stratum ORDER BY md5({seed} || row_id), row_id) AS draw_rank
    FROM all_strata
    """


def _finish(drawn: pa.Table, settings: EvaluationSettings) -> pa.Table:
    """The drawn rows with weights, dev/test split, double-label flags and a shuffled queue order."""
    drawn = drawn.sort_by([("stratum", "ascending"), ("draw_rank", "ascending")])
    stratum = np.asarray(drawn.column("stratum").to_pylist(), dtype=object)
    rows = drawn.column("stratum_rows").to_numpy().astype(np.int64)
    sampled = np.minimum(drawn.column("wanted").to_numpy(), rows).astype(np.int64)
    n = drawn.num_rows
    split = split_within_strata(stratum, settings.dev_fraction, np.random.default_rng([settings.seed, 1]))
    double = np.zeros(n, dtype=bool)
    k = round(settings.double_label_fraction * n)
    if k:
        double[np.random.default_rng([settings.seed, 2]).choice(n, size=k, replace=False)] = True
    position = np.random.default_rng([settings.seed, 3]).permutation(n)
    table = pa.table(
        {
            "row_id": drawn.column("row_id"),
            "stratum": pa.array(stratum.tolist(), pa.string()),
            "stratum_rows": pa.array(rows),
            "stratum_sampled": pa.array(sampled),
            "weight": pa.array(rows / np.maximum(sampled, 1), pa.float64()),
            "split": pa.array(split.tolist(), pa.string()),
            "double_label": pa.array(double),
            "position": pa.array(position.astype(np.int64)),
        },
        schema=SAMPLE_SCHEMA,
    )
    return table.sort_by("position")


def split_within_strata(strata: np.ndarray, dev_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """'dev' or 'test' for each row, drawn within each stratum: a stratum of one row goes to test
    (the estimates are reported there); of more rows, each side gets at least one."""
    out = np.full(len(strata), "test", dtype=object)
    for name in sorted(set(strata.tolist())):
        idx = np.flatnonzero(strata == name)
        n = len(idx)
        n_dev = 0 if n < 2 else min(max(1, round(n * dev_fraction)), n - 1)
        out[rng.permutation(idx)[:n_dev]] = "dev"
    return out


def _strata_table(sample: pa.Table, summary: list[tuple]) -> list[dict]:
    """One entry per stratum of the frame: its rows, how many were drawn, their weight and split, and
    (flagged strata) the range of the rule's first score in it."""
    s_stratum = np.asarray(sample.column("stratum").to_pylist(), dtype=object)
    s_split = np.asarray(sample.column("split").to_pylist(), dtype=object)
    out = []
    for name, rows, low, high in sorted(summary):
        in_sample = s_stratum == name
        drawn = int(in_sample.sum())
        entry = {
            "stratum": name,
            "kind": "flagged" if name.startswith("flagged:") else "unflagged",
            "rows": int(rows),
            "sampled": drawn,
            "weight": int(rows) / drawn if drawn else None,
            "dev": int((in_sample & (s_split == "dev")).sum()),
            "test": int((in_sample & (s_split == "test")).sum()),
        }
        if low is not None:
            entry["score_range"] = [float(low), float(high)]
        out.append(entry)
    return out


def write_sample(run: EvalRun, drawn: DrawnSample, *, replace: bool = False) -> str:
    """Write sample.parquet, excluded.parquet and design.json (each atomically); returns what happened:
    'written', 'unchanged' (the same design was drawn before: nothing rewritten) or 'replaced'.
    An existing sample of another design is kept unless ``replace``: SampleExistsError naming it."""
    from audit.evaluation.labels import label_count

    outcome = "written"
    if run.has_sample():
        old = run.design()
        if _same(old, drawn.design) and run.sample().equals(drawn.sample):
            return "unchanged"
        if not replace:
            raise SampleExistsError(
                f"{run.sample_path}: a sample drawn with other settings or rules exists "
                f"({label_count(run)} labels recorded); pass --replace to draw this one instead"
            )
        outcome = "replaced"
        run.folder.fs.rm(run.design_path)  # no sample until the new design is written with it
    run.folder.write_parquet(run.excluded_path, drawn.excluded)
    run.folder.write_parquet(run.sample_path, drawn.sample)
    run.folder.write_json(run.design_path, drawn.design)  # last: a sample is there once its design is
    return outcome


def _same(a: dict, b: dict) -> bool:
    keys = ("settings", "rules_hash", "config_hash", "frame", "strata")
    return all(a.get(k) == b.get(k) for k in keys)


class SampleExistsError(InputFileError):
    """RUN/evaluation already holds a sample of another design (labels may refer to it)."""
