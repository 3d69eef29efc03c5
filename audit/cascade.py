"""Cascade scoring (``cascade:`` in the config, off by default; docs/cascade.md).

The cheap tier (lexicons, PII, profanity-check, hash lists, CLIP similarity, concept probes and the
CLIP NSFW head) runs on every row. The expensive tier (hatesonar, Detoxify,
open_nsfw and NudeNet on pixels, OCR of the image text and the text scorers on it, and whatever
``register_expensive`` adds) runs only on

- candidates: rows where a cheap score reaches a candidate threshold (``cascade.candidate_if``),
- and a seeded uniform audit sample (``cascade.audit_fraction``, default 1%) of every row.

Caption languages (fastText, ~11 us a caption: more than the whole cheap tier) are detected on
the rows the expensive tier runs on and on every row a rule fires on, so every flag is scoped by
its caption's language as without the cascade; elsewhere no rule fires whatever the language, and
``caption_language`` stays null.

Rows the expensive tier skipped keep null scores for it and ``cascade_status =
skipped_by_cascade``, never a clean-looking value. On the audit sample every scorer ran, so for
each rule that reads an expensive score the sample shows how many of its flags fall on rows that
are not candidates: the cascade would have missed those. ``estimates`` turns the per-shard counts
into a miss rate with a Wilson 95% interval (scipy's ``binomtest``) and an estimated number of
missed flags for the skipped rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.config import CascadeSettings
from audit.images import DecodedImage
from audit.rules import Condition, Rule, RuleSet, rule_mask
from audit.schemas import SCORE_COLUMNS
from audit.tables import active_rows, scatter_array, set_columns, single_array

CANDIDATE, SAMPLED, SKIPPED = "candidate", "audit_sample", "skipped_by_cascade"
# columns the expensive tier never reads (pixels come as decoded images): not copied for it
HEAVY_COLUMNS = ("image", "image_embedding", "text_embedding")

# The expensive tier, by scorer or stage name -> the score columns it produces. Other scorers
# (issue 16's OCR and NudeNet are already here) join with ``register_expensive``.
EXPENSIVE: dict[str, tuple[str, ...]] = {
    "hatesonar": ("text_hate_prob", "text_sonar_offensive_prob"),
    "detoxify": tuple(c for c in SCORE_COLUMNS if c.startswith("detoxify_")),
    "opennsfw": ("image_nsfw_prob",),
    "nudenet": tuple(c.name for c in SCORE_COLUMNS.values() if c.stage == "nudity"),
    "ocr": tuple(c.name for c in SCORE_COLUMNS.values() if c.stage in ("ocr", "ocr_text")),
}


def register_expensive(name: str, columns: Iterable[str]) -> None:
    """Put scorer or stage ``name`` (producing ``columns``) in the expensive tier."""
    EXPENSIVE[name] = tuple(columns)


def is_expensive(name: str) -> bool:
    return name in EXPENSIVE


def expensive_columns() -> set[str]:
    return {c for cols in EXPENSIVE.values() for c in cols}


def expensive_rules(rules: RuleSet) -> list[Rule]:
    """The rules that read a score of the expensive tier: the ones whose flags the cascade can miss."""
    costly = expensive_columns()
    return [r for r in rules.rules if any(c.score in costly for c in r.conditions)]


# --- which rows the expensive tier sees ----------------------------------------------------------


def audit_sample(shard_id: str, row_index: np.ndarray, seed: int, fraction: float) -> np.ndarray:
    """Seeded uniform sample: a row is in it when a 64-bit hash of (seed, shard, row index) falls
    under ``fraction``; the same rows whatever the batch size or worker (splitmix64)."""
    if fraction <= 0:
        return np.zeros(row_index.shape, bool)
    salt = int.from_bytes(hashlib.blake2b(f"{seed}:{shard_id}".encode(), digest_size=8).digest(), "little")
    with np.errstate(over="ignore"):
        z = row_index.astype(np.uint64) + np.uint64(salt)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


def candidates(table: pa.Table, conditions: Iterable[Condition]) -> np.ndarray:
    """Rows where any cheap score reaches its candidate threshold (a missing score never does)."""
    hit = np.zeros(table.num_rows, bool)
    for cond in conditions:
        if cond.score in table.column_names:
            hit |= rule_mask(table, Rule(id="candidate", reason="candidate", severity="info", all=(cond,)))
    return hit


@dataclass
class Plan:
    """Which rows of a batch the expensive tier runs on; None: every row (cascade off)."""

    rows: np.ndarray | None
    status: pa.Array | None = None  # cascade_status per row
    sampled: pa.Array | None = None  # cascade_audit_sample per row

    @classmethod
    def of(cls, table: pa.Table, settings: CascadeSettings) -> Plan:
        if not settings.enabled:
            return cls(None)
        n = table.num_rows
        active = np.zeros(n, bool)
        active[active_rows(table)] = True
        conditions = [Condition.model_validate(c.model_dump()) for c in settings.candidate_if]
        cand = candidates(table, conditions) & active
        shard_ids = table.column("shard_id").unique().to_pylist()
        row_index = table.column("row_index").to_numpy()
        sample = np.zeros(n, bool)
        for sid in shard_ids:  # one shard per batch in an audit; any number in a test table
            at = np.flatnonzero(pc.equal(table.column("shard_id"), sid).to_numpy(zero_copy_only=False))
            sample[at] = audit_sample(sid, row_index[at], settings.seed, settings.audit_fraction)
        sample &= active
        status = np.where(cand, CANDIDATE, np.where(sample, SAMPLED, SKIPPED)).astype(object)
        status[~active] = None
        return cls(
            np.flatnonzero(cand | sample),
            pa.array(status.tolist(), pa.string()),
            pa.array(sample.tolist(), pa.bool_(), mask=~active),
        )

    def widened(self, extra: np.ndarray) -> Plan:
        """The same plan over its rows and the rows where ``extra`` (a row mask) holds."""
        if self.rows is None:
            return self
        mask = np.array(extra, dtype=bool)
        mask[self.rows] = True
        return Plan(np.flatnonzero(mask), self.status, self.sampled)

    def run(
        self,
        table: pa.Table,
        images: Mapping[int, DecodedImage],
        tier: Callable[[pa.Table, Mapping[int, DecodedImage]], pa.Table],
    ) -> pa.Table:
        """``tier`` on the planned rows only (without the image bytes and embeddings: it scores
        decoded pixels and text); its new or changed columns are put back on those rows (nulls
        elsewhere for new columns, earlier values elsewhere for changed ones)."""
        if self.rows is None:
            return tier(table, images)
        rows = self.rows
        narrow = table.drop_columns([c for c in HEAVY_COLUMNS if c in table.column_names])
        sub = narrow.take(pa.array(rows, pa.int64()))
        at = {int(i): j for j, i in enumerate(rows)}
        out = tier(sub, {at[i]: im for i, im in images.items() if i in at})
        inside = np.zeros(table.num_rows, bool)
        inside[rows] = True
        inside = pa.array(inside)
        columns: dict[str, pa.Array] = {}
        for name in out.column_names:
            existing = name in table.column_names
            if existing and _same_buffers(out.column(name), sub.column(name)):
                continue  # passed through: nothing to put back (most columns)
            new = scatter_array(table.num_rows, rows, single_array(out.column(name)))
            columns[name] = pc.if_else(inside, new, single_array(table.column(name))) if existing else new
        return set_columns(table, columns)

    def mark(self, table: pa.Table) -> pa.Table:
        if self.status is None:
            return table
        return set_columns(table, {"cascade_status": self.status, "cascade_audit_sample": self.sampled})


def _same_buffers(a: pa.ChunkedArray, b: pa.ChunkedArray) -> bool:
    """Whether two columns are the same arrays (a stage passed the column through), by their
    buffers' addresses: O(chunks), never a comparison of the values."""
    if a.num_chunks != b.num_chunks or a.type != b.type:
        return False
    for x, y in zip(a.chunks, b.chunks, strict=True):
        if (x.offset, len(x)) != (y.offset, len(y)):
            return False
        if [buf.address if buf else None for buf in x.buffers()] != [
            buf.address if buf else None for buf in y.buffers()
        ]:
            return False
    return True


# --- what the cascade cost: counts per shard, estimates per run ----------------------------------


def shard_counts(scored: pa.Table, rules: RuleSet, *, clip_meaningful: bool) -> dict[str, object]:
    """Rows per status, and per expensive-tier rule its flags on the audit sample and how many of
    those fell on rows that are not candidates (the cascade's misses). Additive across shards."""
    from audit.rules import skipped_rules

    status = scored.column("cascade_status")
    sampled = pc.fill_null(scored.column("cascade_audit_sample"), False).to_numpy(zero_copy_only=False)
    candidate = pc.fill_null(pc.equal(status, CANDIDATE), False).to_numpy(zero_copy_only=False)
    rows = {
        s: int(pc.sum(pc.fill_null(pc.equal(status, s), False)).as_py() or 0)
        for s in (CANDIDATE, SAMPLED, SKIPPED)
    }
    skip = skipped_rules(rules, clip_meaningful)
    per_rule: dict[str, dict[str, int]] = {}
    for rule in expensive_rules(rules):
        if rule.id in skip:
            continue
        fires = rule_mask(scored, rule)
        per_rule[rule.id] = {
            "flags_in_sample": int((fires & sampled).sum()),
            "missed_in_sample": int((fires & sampled & ~candidate).sum()),
            "flags_found": int((fires & (candidate | sampled)).sum()),
        }
    return {
        "rows": rows,
        "sampled_rows": int(sampled.sum()),
        "sampled_non_candidates": int((sampled & ~candidate).sum()),
        "rules": per_rule,
    }


def add_counts(total: dict[str, object], part: Mapping[str, object]) -> dict[str, object]:
    """Sum two ``shard_counts`` results (nested dicts of ints)."""
    out = dict(total)
    for k, v in part.items():
        if isinstance(v, Mapping):
            out[k] = add_counts(dict(out.get(k, {})), v)  # type: ignore[arg-type]
        else:
            out[k] = int(out.get(k, 0)) + int(v)  # type: ignore[call-overload]
    return out


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials (scipy), (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def estimates(counts: Mapping[str, object], settings: CascadeSettings) -> dict[str, object]:
    """The summary's ``cascade`` section: what ran where, and per expensive-tier rule the share of
    non-candidate rows it fires on (from the audit sample, Wilson 95%) times the skipped rows: the
    flags the cascade is estimated to have missed."""
    rows = dict(counts.get("rows", {}))  # type: ignore[call-overload]
    skipped = int(rows.get(SKIPPED, 0))
    n = int(counts.get("sampled_non_candidates", 0))  # type: ignore[call-overload]
    per_rule = {}
    for rule_id, c in dict(counts.get("rules", {})).items():  # type: ignore[call-overload]
        missed, found = int(c["missed_in_sample"]), int(c["flags_found"])
        lo, hi = wilson(missed, n)
        rate = missed / n if n else None
        est = rate * skipped if rate is not None else None
        share = est / (found + est) if est is not None and found + est > 0 else None
        per_rule[rule_id] = {
            "flags_found": found,
            "flags_in_sample": int(c["flags_in_sample"]),
            "missed_in_sample": missed,
            "miss_rate_per_skipped_row": rate,
            "miss_rate_ci95": [lo, hi],
            "estimated_missed_flags": est,
            "estimated_missed_flags_ci95": [lo * skipped, hi * skipped],
            "estimated_share_of_flags_missed": share,
        }
    return {
        "enabled": True,
        "audit_fraction": settings.audit_fraction,
        "seed": settings.seed,
        "expensive_tier": sorted(EXPENSIVE),
        "candidate_if": [c.model_dump(mode="json") for c in settings.candidate_if],
        "rows": rows,
        "sampled_rows": int(counts.get("sampled_rows", 0)),  # type: ignore[call-overload]
        "sampled_non_candidates": n,
        "interval": "Wilson 95% (scipy.stats.binomtest)",
        "rules": per_rule,
    }
