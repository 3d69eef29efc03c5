"""Declarative flagging rules: YAML in, flags with reason codes and severity out.

Scorers produce numbers; rules alone turn numbers into flags. A rule set is versioned and its
hash goes into the manifest.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from audit.config import packaged_file, read_yaml, yaml_kind
from audit.errors import RuleError
from audit.schemas import FLAGS_SCHEMA, SCORE_COLUMNS, SCORES_SCHEMA, SEVERITIES, SOURCE_SCORE_COLUMNS
from audit.tables import single_array

Op = Literal[">=", ">", "<=", "<", "==", "!=", "contains"]
OPS: dict[str, Callable] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
ARROW_OPS: dict[str, Callable] = {
    ">=": pc.greater_equal,
    ">": pc.greater,
    "<=": pc.less_equal,
    "<": pc.less,
    "==": pc.equal,
    "!=": pc.not_equal,
}
RULE_SCORES = tuple(SCORE_COLUMNS) + SOURCE_SCORE_COLUMNS


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    score: str
    op: Op
    value: bool | float | str

    @property
    def clip_based(self) -> bool:
        col = SCORE_COLUMNS.get(self.score)
        return bool(col and col.clip_based)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    reason: str
    severity: Literal["info", "low", "medium", "high", "critical"]
    description: str = ""
    # never render, thumbnail or copy the image of a row this rule fires on (known-bad, csam-risk)
    never_render: bool = False
    all: tuple[Condition, ...] = ()
    any: tuple[Condition, ...] = ()

    @model_validator(mode="after")
    def _has_conditions(self) -> Rule:
        if not self.all and not self.any:
            raise ValueError("a rule needs 'all' or 'any' conditions")
        return self

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return self.all + self.any

    @property
    def clip_based(self) -> bool:
        return any(c.clip_based for c in self.conditions)


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int
    name: str
    rules: tuple[Rule, ...] = Field(min_length=1)
    sha256: str = ""


def load_rules(ref: str) -> RuleSet:
    """A packaged rule set by name ('default') or a YAML file; invalid rules name rule and field."""
    path = _rules_path(ref)
    text, data = read_yaml(path, "rules", RuleError)
    if data is None:
        raise RuleError(f"{path}: the rules file is empty (it needs version, name and rules)")
    if not isinstance(data, dict):
        raise RuleError(
            f"{path}: the rules file must be a mapping with version, name and rules, not {yaml_kind(data)}"
        )
    for i, rule in enumerate(data["rules"] if isinstance(data.get("rules"), list) else []):
        if not isinstance(rule, dict):
            raise RuleError(
                f"{path}: rule #{i}: not a mapping (got {yaml_kind(rule)}; a rule has id, reason, "
                "severity and 'all'/'any' conditions)"
            )
    try:
        rules = RuleSet.model_validate({**data, "sha256": hashlib.sha256(text.encode()).hexdigest()})
    except ValidationError as e:
        raise RuleError(_describe(path, data, e)) from None
    seen: set[str] = set()
    for rule in rules.rules:
        if rule.id in seen:
            raise RuleError(f"{path}: rule '{rule.id}' is defined twice")
        seen.add(rule.id)
        for cond in rule.conditions:
            if cond.score not in RULE_SCORES:
                raise RuleError(
                    f"{path}: rule '{rule.id}' field 'score': unknown score {cond.score!r} "
                    f"(known: {', '.join(RULE_SCORES)})"
                )
            column = SCORE_COLUMNS.get(cond.score)
            is_list = column is not None and pa.types.is_list(column.type)
            if is_list != (cond.op == "contains"):
                raise RuleError(
                    f"{path}: rule '{rule.id}' field 'op': 'contains' is for list scores, and list scores "
                    f"need 'contains' ({cond.score} {cond.op})"
                )
            if isinstance(cond.value, str) and cond.op not in ("==", "!=", "contains"):
                raise RuleError(
                    f"{path}: rule '{rule.id}' field 'op': {cond.op} needs a number, got {cond.value!r}"
                )
    return rules


def _rules_path(ref: str) -> Path:
    """A file (a .yaml/.yml name, a path with a folder, or any existing file) or a packaged set."""
    path = Path(ref)
    if ref.endswith((".yaml", ".yml")) or len(path.parts) > 1 or path.is_file():
        return path
    packaged = packaged_file("rules", f"{ref}.yaml")
    if not packaged.is_file():
        names = ", ".join(sorted(p.stem for p in packaged.parent.glob("*.yaml")))
        raise RuleError(f"rules: {ref!r} is neither a packaged rule set ({names}) nor a .yaml file")
    return packaged


def _describe(path: Path, data: object, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = list(first["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        try:
            where = f"rule '{data['rules'][loc[1]].get('id', '#' + str(loc[1]))}' "  # type: ignore[index]
        except (TypeError, KeyError, IndexError, AttributeError):
            where = f"rule #{loc[1]} "
        loc = loc[2:]
    field = ".".join(str(p) for p in loc) or "rules"
    return f"{path}: {where}field '{field}': {first['msg']}"


def _condition_mask(table: pa.Table, cond: Condition) -> np.ndarray:
    col = table.column(cond.score)
    if cond.op == "contains":  # in Arrow: which rows' lists hold the value, no Python list per row
        arr = single_array(col)
        hit = np.zeros(len(arr), dtype=bool)
        if len(arr) and arr.null_count < len(arr):
            parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
            equal = pc.fill_null(pc.equal(pc.list_flatten(arr), pa.scalar(cond.value)), False)
            hit[parents[equal.to_numpy(zero_copy_only=False)]] = True
        return hit
    if isinstance(cond.value, str) and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        # in Arrow: UTF-8 byte order is code point order, as Python compares str
        return pc.fill_null(ARROW_OPS[cond.op](col, pa.scalar(cond.value, col.type)), False).to_numpy(
            zero_copy_only=False
        )
    if isinstance(cond.value, str):
        values = np.asarray(col.to_pylist(), dtype=object)
        hit = OPS[cond.op](values, cond.value)
    else:
        values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            hit = OPS[cond.op](values, cond.value)
    valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
    return np.asarray(hit, dtype=bool) & valid  # a missing score never fires a rule


def rule_mask(table: pa.Table, rule: Rule) -> np.ndarray:
    mask = np.ones(table.num_rows, dtype=bool)
    for cond in rule.all:
        mask &= _condition_mask(table, cond)
    if rule.any:
        any_mask = np.zeros(table.num_rows, dtype=bool)
        for cond in rule.any:
            any_mask |= _condition_mask(table, cond)
        mask &= any_mask
    return mask


def skipped_rules(rules: RuleSet, clip_meaningful: bool) -> dict[str, str]:
    if clip_meaningful:
        return {}
    return {r.id: "uses CLIP-based scores and CLIP weights are random" for r in rules.rules if r.clip_based}


# Applied whatever the rules file says: a known-bad hash match always makes a critical,
# never-rendered flag (and so an authority-report line), even if the file drops or weakens its rule.
KNOWN_BAD_RULE = Rule(
    id="builtin-known-bad-hash",
    reason="known-bad-hash",
    severity="critical",
    never_render=True,
    description="built in: the image matches a known-bad hash list",
    all=(Condition(score="known_bad_match", op="==", value=True),),
)


def _active_rules(rules: RuleSet, clip_meaningful: bool) -> list[Rule]:
    skip = skipped_rules(rules, clip_meaningful)
    return [r for r in rules.rules if r.id not in skip] + [KNOWN_BAD_RULE]


def any_rule_fires(table: pa.Table, rules: RuleSet, *, clip_meaningful: bool) -> np.ndarray:
    """Rows at least one active rule (or KNOWN_BAD_RULE) fires on, on a table still being scored:
    a score no stage has produced yet is missing, and a missing score never fires a condition."""
    active = _active_rules(rules, clip_meaningful)
    have = set(table.column_names)
    missing = {c.score for r in active for c in r.conditions if c.score not in have}
    view = table
    for name in sorted(missing):
        view = view.append_column(name, pa.nulls(table.num_rows, SCORES_SCHEMA.field(name).type))
    fired = np.zeros(table.num_rows, dtype=bool)
    for rule in active:
        fired |= rule_mask(view, rule)
    return fired


def apply_rules(scores: pa.Table, rules: RuleSet, *, clip_meaningful: bool) -> pa.Table:
    """One FLAGS_SCHEMA row per row that at least one rule fires on (plus KNOWN_BAD_RULE)."""
    active = _active_rules(rules, clip_meaningful)
    fired_all = np.column_stack([rule_mask(scores, r) for r in active])  # rows x rules
    rows = np.flatnonzero(fired_all.any(axis=1))
    if not rows.size:
        return FLAGS_SCHEMA.empty_table()
    flagged = scores.take(pa.array(rows, pa.int64()))
    # rows that fire the same rules share reasons, severity and thresholds: each set of fired
    # rules is described once and spread over its rows by one take (no Python per flagged row)
    fired = fired_all[rows]
    first, inverse = _distinct_rows(fired)
    which = pa.array(inverse, pa.int64())
    fired_sets = [[r for r, hit in zip(active, fired[i], strict=True) if hit] for i in first.tolist()]
    schema = {f.name: f.type for f in FLAGS_SCHEMA}

    def per_set(name: str, values: list) -> pa.Array:
        return pa.array(values, schema[name]).take(which)

    ranks = [max(SEVERITIES.index(r.severity) for r in f) for f in fired_sets]
    out: dict[str, pa.Array] = {
        "reasons": per_set("reasons", [list(dict.fromkeys(r.reason for r in f)) for f in fired_sets]),
        "rules": per_set("rules", [[r.id for r in f] for f in fired_sets]),
        "severity": per_set("severity", [SEVERITIES[k] for k in ranks]),
        "severity_rank": per_set("severity_rank", ranks),
        # (bool conditions count as numeric: True is 1.0 in the scores and thresholds maps)
        "thresholds": per_set(
            "thresholds",
            [
                sorted({f"{r.id}:{c.score}": float(c.value) for r in f for c in _numeric(r)}.items())
                for f in fired_sets
            ],
        ),
        "scores": _fired_scores(flagged, fired_sets, inverse, schema["scores"]),
        "clip_meaningful": pa.array(np.full(rows.size, clip_meaningful)),
    }
    never = np.asarray([any(r.never_render for r in f) for f in fired_sets])[inverse]
    known_bad = pc.fill_null(pc.equal(flagged.column("known_bad_match"), True), False)
    out["render_blocked"] = pa.array(never | known_bad.to_numpy(zero_copy_only=False))
    for name in (
        *("row_id", "key", "shard_id", "row_index", "url", "caption", "ocr_text"),
        *("known_bad_match", "sha256", "image_phash", "image_pdq", "known_bad_list", "known_bad_distance"),
        "cascade_status",
    ):
        if name in flagged.column_names:
            out[name] = single_array(flagged.column(name)).cast(schema[name])
        else:
            out[name] = pa.nulls(rows.size, schema[name])
    return pa.table([out[name] for name in FLAGS_SCHEMA.names], schema=FLAGS_SCHEMA)


def _distinct_rows(fired: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each distinct row's first occurrence, each row's distinct-row number) of a bool
    matrix; rows as integers while they fit 63 bits (np.unique over axis 0 sorts them as bytes)."""
    if fired.shape[1] <= 63:
        codes = fired.astype(np.int64) @ (np.int64(1) << np.arange(fired.shape[1], dtype=np.int64))
        _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(fired, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _numeric(rule: Rule) -> list[Condition]:
    return [c for c in rule.conditions if not isinstance(c.value, str)]


def _fired_scores(
    flagged: pa.Table, fired_sets: list[list[Rule]], which: np.ndarray, map_type: pa.DataType
) -> pa.Array:
    """Per flagged row, its fired rules' numeric scores that are present, sorted by name."""
    per_set = [{c.score for r in f for c in _numeric(r)} for f in fired_sets]
    names = sorted(set().union(*per_set))
    used = np.asarray([[n in scored for n in names] for scored in per_set], dtype=bool).reshape(
        len(fired_sets), len(names)
    )  # (sets x 0 where only string conditions fired)
    values = np.empty((flagged.num_rows, len(names)), np.float64)
    present = used[which]
    for j, name in enumerate(names):
        col = flagged.column(name)
        values[:, j] = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        present[:, j] &= pc.is_valid(col).to_numpy(zero_copy_only=False)
    offsets = np.zeros(flagged.num_rows + 1, np.int32)
    np.cumsum(present.sum(axis=1), out=offsets[1:])
    _, column = np.nonzero(present)  # row-major: each row's names in sorted order
    keys = pa.array(names, pa.string()).take(pa.array(column, pa.int64()))
    return pa.MapArray.from_arrays(pa.array(offsets), keys, pa.array(values[present]), type=map_type)
