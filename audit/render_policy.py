"""The one predicate that decides whether a row's pixels may be shown.

Every path that could show an image (dashboard thumbnails and reveals, report, exports) asks
``may_render``; every path that lists rows asks ``never_render`` to keep the known-bad ones out of
sight (counted, and listed by row id only in authority_report.csv). Both are computed from the
row's own data, not only from which rules fired: a rules file that forgets ``never_render`` on its
hash rule, or drops the rule, cannot make a known-bad image revealable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Reason codes whose rows are never rendered whatever their rule says (older run folders, too).
NEVER_RENDER_REASONS = frozenset({"known-bad-hash", "csam-risk"})

# ``never_render`` over a flags row in DuckDB SQL (tests/review/test_queue.py checks the two agree on
# every row): never-render rows are left out of every queue and only counted and listed by row id.
NEVER_RENDER_SQL = (
    "(coalesce(known_bad_match, false) OR coalesce(render_blocked, false) OR "
    f"list_has_any(reasons, [{', '.join(repr(r) for r in sorted(NEVER_RENDER_REASONS))}]))"
)


def never_render(row: Mapping) -> bool:
    """A hash-list match, a never-render rule or a never-render reason: never shown anywhere.
    ``row`` is a flags, scores or quarantine row."""
    if row.get("known_bad_match") is True or row.get("render_blocked"):
        return True
    reasons: Iterable[str] = row.get("reasons") or ()
    if isinstance(reasons, str):
        reasons = (reasons,)
    reason = row.get("reason")  # a quarantine row's single reason
    return bool(NEVER_RENDER_REASONS.intersection([*reasons, *([reason] if reason else [])]))


def may_render(row: Mapping) -> bool:
    """Pixels may be shown (blurred until revealed) only when the row is known NOT to match a hash
    list (``known_bad_match`` is False, not unknown) and ``never_render`` is False: it fails closed."""
    return row.get("known_bad_match") is False and not never_render(row)
