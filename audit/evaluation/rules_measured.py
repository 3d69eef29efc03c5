"""Which rules are measured, against which harm, and which of their conditions a curve varies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from audit.rules import Condition, Rule, RuleSet
from audit.schemas import Summary

NUMERIC_OPS = (">=", ">", "<=", "<")


def is_numeric(cond: Condition) -> bool:
    """A threshold on a number (not a tag, a list or a true/false match): it can be varied."""
    return cond.op in NUMERIC_OPS and isinstance(cond.value, float) and not isinstance(cond.value, bool)


def upward(cond: Condition) -> bool:
    """Higher values flag (>=, >); otherwise lower values do (<, <=)."""
    return cond.op in (">=", ">")


def describe(cond: Condition) -> str:
    value = cond.value if isinstance(cond.value, str) else f"{cond.value:g}"
    return f"{cond.score} {cond.op} {value}"


@dataclass(frozen=True)
class RuleInfo:
    rule: Rule
    category: str | None  # the harm its flags claim; None: not measured
    not_measured: str | None  # why, when not measured

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def driving(self) -> Condition | None:
        """The condition a threshold curve varies: the rule's first numeric one (``all`` before
        ``any``); the others stay at their configured values."""
        return next((c for c in self.rule.conditions if is_numeric(c)), None)

    @property
    def numeric_conditions(self) -> tuple[Condition, ...]:
        return tuple(c for c in self.rule.conditions if is_numeric(c))


def rule_infos(rules: RuleSet, summary: Summary, categories: Mapping[str, str | None]) -> list[RuleInfo]:
    """Every rule of the run's set, in file order, with its harm or why it is not measured."""
    out = []
    for rule in rules.rules:
        category = categories[rule.id] if rule.id in categories else categories.get(rule.reason)
        why = None
        if rule.id in summary.skipped_rules:
            why = f"not applied in this run: {summary.skipped_rules[rule.id]}"
        elif rule.never_render:
            why = "a never-render rule: its rows are never shown, so never labelled"
        elif category is None:
            why = f"no harm category for reason {rule.reason!r} or rule id (evaluation.categories)"
        out.append(RuleInfo(rule, None if why else category, why))
    return out


def sampled_rules(rules: RuleSet, summary: Summary) -> list[Rule]:
    """Rules whose flagged rows get their own strata: those applied, except never-render ones."""
    return [r for r in rules.rules if r.id not in summary.skipped_rules and not r.never_render]


def band_scores(rules: RuleSet, summary: Summary) -> list[Condition]:
    """One threshold per (score, direction) over the sampled rules' numeric conditions: the loosest,
    so an unflagged row's nearness is measured against the first threshold it would cross."""
    loosest: dict[tuple[str, bool], Condition] = {}
    for rule in sampled_rules(rules, summary):
        for cond in rule.conditions:
            if not is_numeric(cond):
                continue
            key = (cond.score, upward(cond))
            known = loosest.get(key)
            value = float(cond.value)
            if known is None or (value < float(known.value) if key[1] else value > float(known.value)):
                loosest[key] = cond
    return list(loosest.values())
