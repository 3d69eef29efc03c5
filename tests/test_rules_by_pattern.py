"""apply_rules describes each set of fired rules once and spreads it over its rows; checked against
the plain rule, row by row in Python, on random score tables (nulls, NaN, booleans, tags, lists)
and on a rule set too wide for the 63-bit row codes."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from audit.rules import SEVERITIES, RuleSet, _active_rules, apply_rules, load_rules, rule_mask
from audit.schemas import FLAGS_SCHEMA, SCORES_SCHEMA


def _row_by_row(scores: pa.Table, rules: RuleSet, clip_meaningful: bool) -> list[dict]:
    """The flags' meaning spelled out per row: what apply_rules must produce."""
    active = _active_rules(rules, clip_meaningful)
    masks = {r.id: rule_mask(scores, r) for r in active}
    rows = scores.to_pylist()
    out = []
    for i, row in enumerate(rows):
        fired = [r for r in active if masks[r.id][i]]
        if not fired:
            continue
        numeric = [(r, c) for r in fired for c in r.conditions if not isinstance(c.value, str)]
        present = {c.score: row[c.score] for _, c in numeric if row[c.score] is not None}
        out.append(
            {
                "row_id": row["row_id"],
                "reasons": list(dict.fromkeys(r.reason for r in fired)),
                "rules": [r.id for r in fired],
                "severity_rank": max(SEVERITIES.index(r.severity) for r in fired),
                "scores": sorted((k, float(v)) for k, v in present.items()),
                "thresholds": sorted({f"{r.id}:{c.score}": float(c.value) for r, c in numeric}.items()),
                "render_blocked": any(r.never_render for r in fired) or row["known_bad_match"] is True,
                "caption": row["caption"],
                "known_bad_distance": row["known_bad_distance"],
            }
        )
    return out


def _random_scores(rules: RuleSet, n: int, seed: int) -> pa.Table:
    rng = random.Random(seed)
    used = {c.score for r in rules.rules for c in r.conditions} | {"known_bad_match"}
    tags = sorted({c.value for r in rules.rules for c in r.conditions if isinstance(c.value, str)})
    cols: dict[str, list] = {
        "row_id": [f"shard-{seed}:{i}" for i in range(n)],
        "key": ["same-key"] * n,
        "shard_id": [f"shard-{seed}"] * n,
        "row_index": list(range(n)),
        "caption": [rng.choice([None, "", "a caption", "\u202e<b>x</b>"]) for _ in range(n)],
        "known_bad_distance": [rng.choice([None, 0, 7]) for _ in range(n)],
    }
    for name in sorted(used):
        t = SCORES_SCHEMA.field(name).type

        def value(t: pa.DataType = t) -> object:
            if rng.random() < 0.25:
                return None
            if pa.types.is_boolean(t):
                return rng.random() < 0.3
            if pa.types.is_integer(t):
                return rng.choice([0, 0, 1, 3])
            if pa.types.is_floating(t):
                return math.nan if rng.random() < 0.05 else rng.random()
            if pa.types.is_list(t):
                return rng.sample([*tags, "other"], rng.randrange(3))
            return rng.choice([*tags, "other", ""])

        cols[name] = [value() for _ in range(n)]
    arrays = [pa.array(cols.get(f.name, [None] * n), f.type) for f in SCORES_SCHEMA]
    return pa.table(arrays, schema=SCORES_SCHEMA)


def _compared(flags: pa.Table) -> list[dict]:
    names = ("row_id", "reasons", "rules", "severity_rank", "scores", "thresholds", "render_blocked")
    return _same_nan(flags.select([*names, "caption", "known_bad_distance"]).to_pylist())


def _same_nan(rows: list[dict]) -> list[dict]:
    for r in rows:  # NaN never equals itself: compared by name
        r["scores"] = [(k, "nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r["scores"]]
    return rows


@pytest.mark.parametrize("clip_meaningful", [True, False])
@pytest.mark.parametrize("seed", range(2))
def test_default_rules_flag_what_the_per_row_rule_flags(seed: int, clip_meaningful: bool) -> None:
    rules = load_rules("default")
    scores = _random_scores(rules, 2000, seed)
    flags = apply_rules(scores, rules, clip_meaningful=clip_meaningful)
    assert flags.schema.equals(FLAGS_SCHEMA)
    want = _same_nan(_row_by_row(scores, rules, clip_meaningful))
    assert len(want) > 400  # the random table fires most rules, in many combinations
    assert len({tuple(w["rules"]) for w in want}) > 50
    assert _compared(flags) == want
    assert set(flags.column("severity").to_pylist()) == {SEVERITIES[w["severity_rank"]] for w in want}
    assert flags.column("clip_meaningful").to_pylist() == [clip_meaningful] * len(want)


def test_more_rules_than_a_63_bit_row_code_holds(tmp_path: Path) -> None:
    body = "".join(
        f"  - {{id: r{i:02d}, reason: reason-{i % 7}, severity: {SEVERITIES[i % len(SEVERITIES)]}, "
        f"never_render: {str(i % 11 == 0).lower()}, "
        f"all: [{{score: text_offensive_prob, op: '>=', value: {i / 80}}}]}}\n"
        for i in range(80)
    )
    path = tmp_path / "wide.yaml"
    path.write_text("version: 1\nname: wide\nrules:\n" + body)
    rules = load_rules(str(path))
    scores = _random_scores(rules, 2000, 11)
    flags = apply_rules(scores, rules, clip_meaningful=True)
    want = _same_nan(_row_by_row(scores, rules, True))
    assert len({tuple(w["rules"]) for w in want}) > 63
    assert _compared(flags) == want


def test_no_row_fired_gives_an_empty_flags_table() -> None:
    scores = _random_scores(load_rules("default"), 50, 3).slice(0, 0)
    flags = apply_rules(scores, load_rules("default"), clip_meaningful=True)
    assert flags.num_rows == 0 and flags.schema.equals(FLAGS_SCHEMA)
    assert np.asarray(flags.column("row_index")).size == 0
