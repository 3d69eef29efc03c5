"""Which flagged rows go on the removal list, and the list's machine-readable forms
(docs/removal-lists.md).

A row goes on the list for the first of these that holds (its ``basis``):

- ``never-render``: a known-bad hash match or a never-render rule (audit.render_policy). Always,
  whatever the policy and whatever a reviewer said: no reviewer can have looked at it;
- ``confirmed``: its latest reviewer decision is confirm_harmful (``removal.confirmed``);
- ``severity``: its severity is at least ``removal.min_severity``;
- ``rule``: one of the rules in ``removal.rules`` fired on it.

A row whose latest decision is false_positive is never on the list (unless never-render);
needs_escalation changes nothing. Rows are named by row id, never by the dataset's key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from audit.config import RemovalSettings, resolve_section
from audit.errors import ConfigError
from audit.render_policy import never_render
from audit.review import DecisionRow, severity_rank
from audit.rules import load_rules

BASES = ("never-render", "confirmed", "severity", "rule")

REMOVAL_LIST_SCHEMA = pa.schema(
    [
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("shard_id", pa.string(), nullable=False),
        pa.field("row_index", pa.int64(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("image_phash", pa.string()),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("reasons", pa.list_(pa.string()), nullable=False),
        pa.field("rules", pa.list_(pa.string()), nullable=False),
        pa.field("basis", pa.string(), nullable=False),  # one of BASES
        pa.field("decision", pa.string()),  # the latest reviewer decision, if any
        pa.field("reviewer", pa.string()),
        pa.field("decided_at", pa.string()),
    ],
    metadata={"mmaudit.schema": "removal_list", "mmaudit.version": "1"},
)

# For copies of the dataset that others hold: match by URL, by SHA-256 of the bytes, or by pHash.
REMOVED_URLS_SCHEMA = pa.schema(
    [
        pa.field("url", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("image_phash", pa.string()),
        pa.field("key", pa.string(), nullable=False),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("reasons", pa.list_(pa.string()), nullable=False),
    ],
    metadata={"mmaudit.schema": "removed_urls", "mmaudit.version": "1"},
)

# DataComp's subset format: 128-bit uids as pairs of unsigned 64-bit integers, sorted.
DATACOMP_UID_DTYPE = np.dtype("u8,u8")
_HEX_UID = re.compile(r"[0-9a-fA-F]{32}")  # fixed length: linear


def removal_basis(flag: Mapping, decision: DecisionRow | None, policy: RemovalSettings) -> str | None:
    """Why ``flag`` goes on the removal list (one of BASES), or None when it does not."""
    if never_render(flag):
        return "never-render"
    latest = decision.decision if decision is not None else None
    if latest == "false_positive":
        return None
    if latest == "confirm_harmful" and policy.confirmed:
        return "confirmed"
    if policy.min_severity is not None and flag["severity_rank"] >= severity_rank(policy.min_severity):
        return "severity"
    if policy.rules and set(flag["rules"]) & set(policy.rules):
        return "rule"
    return None


def resolve_policy(
    manifest_config: Mapping[str, Any],
    config_path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RemovalSettings:
    """The run's ``removal:`` section (defaults for runs written before it existed), replaced by
    ``config_path``'s when given, then ``removal.*`` overrides; one-line ConfigError when invalid."""
    return resolve_section(
        manifest_config, "removal", RemovalSettings, config_path, overrides,
        usage="the report takes removal.* keys only (removal.min_severity)", nested=False,
    )  # fmt: skip


def check_rule_ids(policy: RemovalSettings, rules_ref: str) -> str | None:
    """ConfigError for a rule id the run's rules do not have; a note when the rules cannot be read."""
    if not policy.rules:
        return None
    try:
        known = {r.id for r in load_rules(rules_ref).rules}
    except Exception as e:  # a rules file moved since the audit: the ids cannot be checked
        return f"removal.rules not checked against the run's rules ({rules_ref}: {type(e).__name__})"
    unknown = [r for r in policy.rules if r not in known]
    if unknown:
        raise ConfigError(
            f"removal.rules: unknown rule id {unknown[0]!r} (rules of this run: {', '.join(sorted(known))})"
        )
    return None


def datacomp_uid(uid: str) -> tuple[int, int] | None:
    """A DataComp uid (32 hex digits) as its two 64-bit halves; None for anything else."""
    if not _HEX_UID.fullmatch(uid):
        return None
    return int(uid[:16], 16), int(uid[16:], 16)


def datacomp_uid_array(pairs: list[tuple[int, int]]) -> np.ndarray:
    """Sorted, unique, in DataComp's subset dtype."""
    arr = np.array(pairs, dtype=DATACOMP_UID_DTYPE)
    return np.unique(arr)  # sorts lexicographically over the two fields


def subtract_uids(subset: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """A DataComp subset (sorted uid array) without the removed uids, by binary search: for making
    a training subset from a pool's uid list and datacomp_removed_uids.npy."""
    if subset.dtype != DATACOMP_UID_DTYPE or removed.dtype != DATACOMP_UID_DTYPE:
        raise ValueError(f"both arrays must have dtype {DATACOMP_UID_DTYPE}")
    if not len(removed):
        return subset
    at = np.minimum(np.searchsorted(removed, subset), len(removed) - 1)
    return subset[removed[at] != subset]
