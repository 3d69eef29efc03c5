from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from audit.errors import RuleError
from audit.rules import apply_rules, load_rules
from audit.schemas import FLAGS_SCHEMA, SCORES_SCHEMA


def _scores(**cols: list) -> pa.Table:
    n = len(next(iter(cols.values())))
    base = {
        "key": [f"k{i}" for i in range(n)],
        "shard_id": ["s"] * n,
        "row_index": list(range(n)),
    }
    base.update(cols)
    arrays = [pa.array(base.get(f.name, [None] * n), f.type) for f in SCORES_SCHEMA]
    return pa.table(arrays, schema=SCORES_SCHEMA)


def _rules(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nname: t\nrules:\n" + body)
    return path


def test_default_rules_flag_offensive_and_keep_missing_scores_silent() -> None:
    table = _scores(
        text_offensive_prob=[0.95, 0.1, None],
        text_hate_prob=[0.7, 0.7, None],
        text_sonar_offensive_prob=[0.2, 0.2, None],
    )
    flags = apply_rules(table, load_rules("default"), clip_meaningful=True)
    assert flags.schema == FLAGS_SCHEMA
    assert flags.column("key").to_pylist() == ["k0"]
    assert flags.column("reasons")[0].as_py() == ["hateful-caption", "offensive-caption"]
    assert flags.column("severity")[0].as_py() == "high"
    thresholds = dict(flags.column("thresholds")[0].as_py())
    assert thresholds["hateful-caption:text_hate_prob"] == pytest.approx(0.6)


def test_clip_rules_are_skipped_when_weights_are_random() -> None:
    table = _scores(clip_similarity=[0.05, 0.5])
    assert apply_rules(table, load_rules("default"), clip_meaningful=True).column("key").to_pylist() == ["k0"]
    assert apply_rules(table, load_rules("default"), clip_meaningful=False).num_rows == 0


def test_string_conditions_match_the_source_nsfw_tag() -> None:
    table = _scores(source_nsfw=["NSFW", "UNLIKELY", None])
    flags = apply_rules(table, load_rules("default"), clip_meaningful=False)
    assert flags.column("key").to_pylist() == ["k0"]
    assert flags.column("reasons")[0].as_py() == ["source-nsfw"]


def test_string_conditions_by_every_operator_and_never_on_a_missing_tag(tmp_path: Path) -> None:
    tags = ["NSFW", "UNLIKELY", None, "", "NSFW\u00e9", "UNSURE"]
    cases = {"==": ["k0"], "!=": ["k0", "k3", "k4", "k5"]}  # the loader refuses ordering on strings
    for op, want in cases.items():
        cond = f"{{score: source_nsfw, op: '{op}', value: UNLIKELY}}"
        body = f"  - {{id: r, reason: x, severity: low, all: [{cond}]}}\n"
        if op == "==":
            body = body.replace("UNLIKELY", "NSFW")
        rules = load_rules(str(_rules(tmp_path, body)))
        flags = apply_rules(_scores(source_nsfw=tags), rules, clip_meaningful=True)
        assert flags.column("key").to_pylist() == want, op


def test_unknown_score_names_rule_and_field(tmp_path: Path) -> None:
    path = _rules(
        tmp_path, "  - {id: r1, reason: x, severity: low, all: [{score: nope, op: '>', value: 1}]}\n"
    )
    with pytest.raises(RuleError, match=r"rule 'r1' field 'score': unknown score 'nope'"):
        load_rules(str(path))


def test_invalid_severity_names_rule_and_field(tmp_path: Path) -> None:
    path = _rules(
        tmp_path,
        "  - {id: r2, reason: x, severity: huge, all: [{score: clip_similarity, op: '>', value: 1}]}\n",
    )
    with pytest.raises(RuleError, match=r"rule 'r2' field 'severity'"):
        load_rules(str(path))


def test_rule_without_conditions_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"rule 'r3'.*needs 'all' or 'any'"):
        load_rules(str(_rules(tmp_path, "  - {id: r3, reason: x, severity: low}\n")))


def test_duplicate_rule_ids_are_rejected(tmp_path: Path) -> None:
    rule = "  - {id: d, reason: x, severity: low, all: [{score: clip_similarity, op: '>', value: 1}]}\n"
    with pytest.raises(RuleError, match="'d' is defined twice"):
        load_rules(str(_rules(tmp_path, rule + rule)))


def test_rule_set_hash_changes_with_its_text(tmp_path: Path) -> None:
    a = _rules(
        tmp_path,
        "  - {id: a, reason: x, severity: low, all: [{score: clip_similarity, op: '>', value: 1}]}\n",
    )
    h1 = load_rules(str(a)).sha256
    a.write_text(a.read_text().replace("value: 1", "value: 2"))
    assert load_rules(str(a)).sha256 != h1


def test_contains_matches_list_scores_and_feeds_combination_rules() -> None:
    table = _scores(concept_hits=[["sexual", "minors"], ["sexual"], None, []])
    flags = apply_rules(table, load_rules("default"), clip_meaningful=True)
    by_key = {r["key"]: r for r in flags.to_pylist()}
    assert by_key["k0"]["severity"] == "critical" and by_key["k0"]["render_blocked"] is True
    assert "csam-risk" in by_key["k0"]["reasons"]
    assert by_key["k1"]["reasons"] == ["nsfw-image"] and by_key["k1"]["render_blocked"] is False
    assert set(by_key) == {"k0", "k1"}


def test_contains_and_list_scores_must_go_together(tmp_path: Path) -> None:
    bad = "  - {id: c, reason: x, severity: low, all: [{score: concept_hits, op: '>=', value: 1}]}\n"
    with pytest.raises(RuleError, match=r"rule 'c' field 'op': 'contains' is for list scores"):
        load_rules(str(_rules(tmp_path, bad)))
    bad = "  - {id: d, reason: x, severity: low, all: [{score: clip_similarity, op: contains, value: x}]}\n"
    with pytest.raises(RuleError, match=r"rule 'd' field 'op'"):
        load_rules(str(_rules(tmp_path, bad)))


MALFORMED_IDS = ["bad-yaml", "list", "number", "string", "empty", "comment-only"]
MALFORMED_IDS += ["rules-scalar", "rule-string", "rule-list", "condition-number"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("version: 1\nrules: [\n", "not valid YAML"),
        ("- id: a\n- id: b\n", "must be a mapping"),
        ("42\n", "must be a mapping"),
        ("just words\n", "must be a mapping"),
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        ("version: 1\nname: t\nrules: 5\n", "field 'rules'"),
        ("version: 1\nname: t\nrules: [just-a-string]\n", "rule #0: not a mapping"),
        ("version: 1\nname: t\nrules:\n  - [a, b]\n", "rule #0: not a mapping"),
        (
            "version: 1\nname: t\nrules:\n  - {id: r, reason: x, severity: low, all: [5]}\n",
            "rule 'r' field 'all.0'",
        ),
    ],
    ids=MALFORMED_IDS,
)
def test_malformed_rules_file_is_one_line_naming_the_file(tmp_path: Path, body: str, says: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(body)
    with pytest.raises(RuleError) as err:
        load_rules(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: ") and says in message, message
    assert "\n" not in message


def test_unreadable_rules_file_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "rules.yaml"
    folder.mkdir()
    with pytest.raises(RuleError, match=rf"^{folder}: cannot read the rules file"):
        load_rules(str(folder))
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"version: 1\nname: \xff\n")
    with pytest.raises(RuleError, match=rf"^{binary}: cannot read the rules file .*UTF-8"):
        load_rules(str(binary))


def test_unknown_rule_set_name_says_what_exists() -> None:
    with pytest.raises(RuleError, match=r"rules: 'nope' is neither a packaged rule set \(default"):
        load_rules("nope")
