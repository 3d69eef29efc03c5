"""The summary's counts of scored rows, made by each shard task batch by batch (image status,
img2dataset download outcome, languages) and added up by finalize: finalize reads no score file
back, so its work follows the number of shards and flags, not the corpus' rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from audit.language_summary import LanguageTally, merge_language_counts
from audit.schemas import LanguageCounts, ShardTallies


def value_counts(col: pa.Array | pa.ChunkedArray) -> Counter[str]:
    """Rows per value (null counted as 'None', as str() of it), in Arrow: no Python object per row."""
    out: Counter[str] = Counter()
    for item in pc.value_counts(col).to_pylist():
        out[str(item["values"])] += int(item["counts"])
    return out


class ShardTally:
    """One shard's counts, added a batch of scored rows (SCORES_SCHEMA) and its flags at a time."""

    def __init__(self) -> None:
        self.image_status: Counter[str] = Counter()
        self.fetch_status: Counter[str] = Counter()
        self.fetch_failure_reasons: Counter[str] = Counter()
        self.languages = LanguageTally()

    def add(self, scored: pa.Table, flags: pa.Table) -> None:
        if not scored.num_rows:
            return
        self.image_status.update(value_counts(scored.column("image_status")))
        fetch = scored.select(["fetch_status", "fetch_error"])  # filter these, not the wide table
        fetched = fetch.filter(pc.is_valid(fetch.column("fetch_status")))
        if fetched.num_rows:
            self.fetch_status.update(value_counts(fetched.column("fetch_status")))
            failed = fetched.filter(pc.not_equal(fetched.column("fetch_status"), "success"))
            if failed.num_rows:
                from audit.fetch import error_reason  # only shards that went through a fetch

                for err in failed.column("fetch_error").to_pylist():  # failed downloads only
                    self.fetch_failure_reasons[error_reason(err)] += 1
        self.languages.add(scored, flags)

    def result(self) -> ShardTallies:
        by_caption, by_image_text = self.languages.counts()
        return ShardTallies(
            image_status=dict(sorted(self.image_status.items())),
            fetch_status=dict(sorted(self.fetch_status.items())),
            fetch_failure_reasons=dict(sorted(self.fetch_failure_reasons.items())),
            languages=by_caption,
            image_text_languages=by_image_text,
        )


class RunTallies:
    """The shards' tallies added up, in the summary's shapes."""

    def __init__(self, parts: Iterable[ShardTallies]) -> None:
        parts = list(parts)
        self.image_status = _sum(p.image_status for p in parts)
        status = _sum(p.fetch_status for p in parts)
        reasons = _sum(p.fetch_failure_reasons for p in parts)
        # the summary's download outcome: empty when no row went through a fetch
        self.fetch = {"status": status, "failure_reasons": reasons} if status else {}
        self.languages: dict[str, LanguageCounts] = merge_language_counts(p.languages for p in parts)
        self.image_text_languages: dict[str, LanguageCounts] = merge_language_counts(
            p.image_text_languages for p in parts
        )


def _sum(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(sorted(total.items()))
