"""Per-language figures for summary.json and the report: rows, flags and not-applicable counts by
caption language, and by the language of the text read from images. Each shard task counts its
own batches with Arrow group-bys (no Python object per row); finalize adds the shards' counts."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from audit.cascade import SKIPPED
from audit.schemas import LanguageCounts

NO_CAPTION = "none"  # image-only rows: no caption language to count them under
# a caption the cascade sent to no language detector (no expensive scorer ran and no rule fired)
NOT_DETECTED = "not-detected"
_SIDES = {"caption": "caption_language", "ocr": "ocr_language"}


class _Tally:
    def __init__(self) -> None:
        self.rows: Counter[str] = Counter()
        self.flagged: Counter[str] = Counter()
        self.reasons: dict[str, Counter[str]] = defaultdict(Counter)
        self.na: dict[str, Counter[str]] = defaultdict(Counter)

    def add_counts(self, counts: dict[str, LanguageCounts]) -> None:
        for key, c in counts.items():
            self.rows[key] += c.rows
            self.flagged[key] += c.rows_flagged
            self.reasons[key].update(c.flags_by_reason)
            self.na[key].update(c.not_applicable)

    def build(self) -> dict[str, LanguageCounts]:
        return {
            key: LanguageCounts(
                rows=n,
                rows_flagged=self.flagged[key],
                flags_by_reason=dict(sorted(self.reasons[key].items())),
                not_applicable=dict(sorted(self.na[key].items())),
            )
            for key, n in sorted(self.rows.items(), key=lambda kv: (-kv[1], kv[0]))
        }


def _count(columns: dict[str, pa.Array], mask: pa.Array | None) -> list[dict]:
    """Rows per distinct combination of ``columns`` (where ``mask`` holds), by an Arrow group-by."""
    table = pa.table(columns)
    if mask is not None:
        table = table.filter(mask)
    return table.group_by(list(columns)).aggregate([([], "count_all")]).to_pylist() if table.num_rows else []


def _add_shard(tally: dict[str, _Tally], scores: pa.Table, flags: pa.Table) -> None:
    langs = {
        side: pc.fill_null(scores.column(col), NO_CAPTION).combine_chunks() for side, col in _SIDES.items()
    }
    if "cascade_status" in scores.column_names:
        undetected = pc.and_(
            pc.is_null(scores.column("caption_language")), pc.equal(scores.column("cascade_status"), SKIPPED)
        )
        undetected = pc.fill_null(pc.and_(undetected, pc.is_null(scores.column("caption_problem"))), False)
        langs["caption"] = pc.if_else(undetected, NOT_DETECTED, langs["caption"]).combine_chunks()
    has_text = pc.fill_null(pc.greater(pc.utf8_length(scores.column("ocr_text")), 0), False).combine_chunks()
    # the scored row of each flag (flags of quarantined rows have none and are not counted here)
    at = pc.index_in(
        flags.column("row_id"), value_set=scores.column("row_id").combine_chunks()
    ).combine_chunks()
    found = pc.is_valid(at)
    at = at.filter(found)
    reasons = flags.column("reasons").combine_chunks().filter(found)
    reason_row = at.take(pc.list_parent_indices(reasons))  # one entry per (flag, reason)
    na = scores.column("not_applicable").combine_chunks()
    na_row, na_name = pc.list_parent_indices(na), pc.list_flatten(na)
    # ocr:<scorer> belongs to the image text; the rest (and "ocr" itself) to the caption side
    image_text_na = pc.starts_with(na_name, "ocr:")
    for side, t in tally.items():
        lang, ocr = langs[side], side == "ocr"
        for r in _count({side: lang}, has_text if ocr else None):
            t.rows[r[side]] += r["count_all"]
        for r in _count({side: lang.take(at)}, has_text.take(at) if ocr else None):
            t.flagged[r[side]] += r["count_all"]
        by_reason = {side: lang.take(reason_row), "reason": pc.list_flatten(reasons)}
        for r in _count(by_reason, has_text.take(reason_row) if ocr else None):
            t.reasons[r[side]][r["reason"]] += r["count_all"]
        mask = pc.and_(image_text_na, has_text.take(na_row)) if ocr else pc.invert(image_text_na)
        for r in _count({side: lang.take(na_row), "name": na_name}, mask):
            t.na[r[side]][r["name"]] += r["count_all"]


class LanguageTally:
    """A shard's per-language counts, added batch by batch as the shard task scores it."""

    def __init__(self) -> None:
        self._tally = {side: _Tally() for side in _SIDES}

    def add(self, scores: pa.Table, flags: pa.Table) -> None:
        """One batch: its scored rows and its flags (flags of quarantined rows are not counted)."""
        if scores.num_rows:
            _add_shard(self._tally, scores, flags)

    def counts(self) -> tuple[dict[str, LanguageCounts], dict[str, LanguageCounts]]:
        """(by caption language, by image-text language)."""
        return self._tally["caption"].build(), self._tally["ocr"].build()


def merge_language_counts(parts: Iterable[dict[str, LanguageCounts]]) -> dict[str, LanguageCounts]:
    """The shards' counts added up, most rows first (ties by language)."""
    total = _Tally()
    for counts in parts:
        total.add_counts(counts)
    return total.build()
