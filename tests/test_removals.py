"""Removal lists (docs/removal-lists.md) written by the report of a real audit of the sample: which
rows go on them and why, their columns, and DataComp's uid subset format."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from audit.config import RemovalSettings
from audit.removals import (
    DATACOMP_UID_DTYPE,
    REMOVAL_LIST_SCHEMA,
    REMOVED_URLS_SCHEMA,
    datacomp_uid,
    datacomp_uid_array,
    removal_basis,
    subtract_uids,
)
from audit.report import write_report
from audit.review import DecisionRow, load_run, record_decision, record_decisions, render_blocked


@pytest.fixture
def run_dir(sample_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sample_run, tmp_path / "run"))


def _list(run: Path) -> list[dict]:
    return pq.read_table(run / "report" / "removal_list.parquet").to_pylist()


def _flag(run: Path, key: str) -> dict:
    return next(f for f in load_run(str(run)).flags.to_pylist() if f["key"] == key)


def test_removal_list_names_rows_with_key_url_sha256_reasons_and_the_decision(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    confirmed = _flag(run_dir, "offensive-0")
    record_decision(run, confirmed["row_id"], "confirm_harmful", "ann", note="seen")
    write_report(str(run_dir))
    rows = _list(run_dir)
    assert pq.read_schema(run_dir / "report" / "removal_list.parquet").names == REMOVAL_LIST_SCHEMA.names
    text = [line.split("\t") for line in (run_dir / "report" / "removal_list.txt").read_text().splitlines()]
    assert [r["row_id"] for r in rows] == [t[0] for t in text]  # the same rows as the text form
    flags = {f["row_id"]: f for f in run.flags.to_pylist()}
    for r in rows:
        f = flags[r["row_id"]]
        assert (r["key"], r["url"], r["sha256"], r["severity"]) == (
            f["key"],
            f["url"],
            f["sha256"],
            f["severity"],
        )
        assert r["reasons"] == f["reasons"] and r["rules"] == f["rules"]
        assert (r["shard_id"], r["row_index"]) == (f["shard_id"], f["row_index"])
    by_id = {r["row_id"]: r for r in rows}
    mine = by_id[confirmed["row_id"]]
    assert (mine["basis"], mine["decision"], mine["reviewer"]) == ("confirmed", "confirm_harmful", "ann")
    assert {r["basis"] for r in rows if render_blocked(flags[r["row_id"]])} == {"never-render"}
    assert all(len(r["sha256"]) == 64 for r in rows if r["basis"] == "never-render")
    meta = pq.read_schema(run_dir / "report" / "removal_list.parquet").metadata
    assert meta[b"mmaudit.config_hash"].decode() == run.manifest.config_hash
    assert b"min_severity" in meta[b"mmaudit.removal_policy"]


def test_removed_urls_carry_what_other_copies_are_matched_by(run_dir: Path) -> None:
    write_report(str(run_dir))
    urls = pq.read_table(run_dir / "report" / "removed_urls.parquet")
    assert urls.schema.names == REMOVED_URLS_SCHEMA.names
    rows = _list(run_dir)
    assert urls.column("url").to_pylist() == [r["url"] for r in rows]
    assert urls.column("sha256").to_pylist() == [r["sha256"] for r in rows]
    assert "row_id" not in urls.schema.names  # row ids mean nothing to another copy


def test_a_false_positive_leaves_the_list_but_a_never_render_row_stays(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    offensive, known_bad = _flag(run_dir, "offensive-1"), _flag(run_dir, "known-bad-exact")
    for f in (offensive, known_bad):
        record_decision(run, f["row_id"], "false_positive", "ann")
    write_report(str(run_dir))
    by_id = {r["row_id"]: r for r in _list(run_dir)}
    assert offensive["row_id"] not in by_id
    assert by_id[known_bad["row_id"]]["basis"] == "never-render"
    assert by_id[known_bad["row_id"]]["decision"] == "false_positive"


def _unflagged_scored(run_dir: Path, n: int) -> list[dict]:
    flagged = {f["row_id"] for f in load_run(str(run_dir)).flags.to_pylist()}
    scores = pq.read_table(run_dir / "scores").to_pylist()
    return [r for r in scores if r["row_id"] not in flagged][:n]


def test_a_confirmed_row_no_rule_flagged_goes_on_the_list_as_reviewer_confirmed(run_dir: Path) -> None:
    """A "more like this" find confirmed by a reviewer: decidable by its row id, removed with the
    reviewer's reason; a false positive or an undecided unflagged row stays off the list."""
    run = load_run(str(run_dir))
    confirmed, dismissed = _unflagged_scored(run_dir, 2)
    assert record_decisions(run, [confirmed["row_id"]], "confirm_harmful", "ann", "near copy") == 1
    record_decision(run, dismissed["row_id"], "false_positive", "bob")
    with pytest.raises(ValueError, match="neither a flagged nor a scored row"):
        record_decision(run, f"{confirmed['shard_id']}:999999", "confirm_harmful", "ann")
    with pytest.raises(ValueError, match="neither flagged nor scored"):
        record_decisions(run, ["../../etc:1"], "confirm_harmful", "ann")  # names no shard of the run
    write_report(str(run_dir))
    by_id = {r["row_id"]: r for r in _list(run_dir)}
    mine = by_id[confirmed["row_id"]]
    assert (mine["key"], mine["url"], mine["sha256"], mine["shard_id"], mine["row_index"]) == (
        confirmed["key"], confirmed["url"], confirmed["sha256"], confirmed["shard_id"], confirmed["row_index"]
    )  # fmt: skip
    assert (mine["basis"], mine["reasons"], mine["rules"]) == ("confirmed", ["reviewer-confirmed"], [])
    assert (mine["decision"], mine["reviewer"]) == ("confirm_harmful", "ann")
    assert dismissed["row_id"] not in by_id
    text = (run_dir / "report" / "removal_list.txt").read_text().splitlines()
    assert sum(line.startswith(confirmed["row_id"] + "\t") for line in text) == 1
    urls = pq.read_table(run_dir / "report" / "removed_urls.parquet").column("url").to_pylist()
    assert confirmed["url"] in urls
    # with removal.confirmed off, the reviewer's confirmation removes nothing by itself
    write_report(str(run_dir), overrides={"removal.confirmed": False})
    assert confirmed["row_id"] not in {r["row_id"] for r in _list(run_dir)}


def _decision(value: str) -> DecisionRow:
    return DecisionRow(1, "s:1", "k", value, "ann", "", "2026-01-01T00:00:00+00:00")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("flag", "decision", "policy", "basis"),
    [
        ({"severity_rank": 2, "rules": ["offensive-caption"]}, None, {}, "severity"),
        ({"severity_rank": 1, "rules": ["pii-in-caption"]}, None, {}, None),
        ({"severity_rank": 1, "rules": ["pii-in-caption"]}, None, {"rules": ("pii-in-caption",)}, "rule"),
        ({"severity_rank": 1, "rules": ["pii-in-caption"]}, "confirm_harmful", {}, "confirmed"),
        ({"severity_rank": 1, "rules": ["x"]}, "confirm_harmful", {"confirmed": False}, None),
        ({"severity_rank": 4, "rules": ["x"]}, "false_positive", {}, None),
        ({"severity_rank": 2, "rules": ["x"]}, "needs_escalation", {}, "severity"),
        ({"severity_rank": 2, "rules": ["x"]}, None, {"min_severity": None}, None),
        ({"severity_rank": 0, "rules": [], "known_bad_match": True}, "false_positive", {"min_severity": None},
         "never-render"),
        ({"severity_rank": 0, "rules": [], "reasons": ["csam-risk"]}, None, {"min_severity": None},
         "never-render"),
    ],
)  # fmt: skip
def test_removal_basis(flag: dict, decision: str | None, policy: dict, basis: str | None) -> None:
    d = _decision(decision) if decision else None
    assert removal_basis(flag, d, RemovalSettings(**policy)) == basis


def test_datacomp_uids_are_pairs_of_64_bit_halves_sorted_and_subtractable() -> None:
    a, b = "6e356964a967af455c8016b75d691203", "139e4a9b22a614771f06c700a8ebe150"
    assert datacomp_uid(a) == (int(a[:16], 16), int(a[16:], 16))
    assert datacomp_uid("u0") is None and datacomp_uid(a + "0") is None
    arr = datacomp_uid_array([datacomp_uid(a), datacomp_uid(b), datacomp_uid(a)])
    assert arr.dtype == DATACOMP_UID_DTYPE == np.dtype("u8,u8")
    assert [tuple(int(v) for v in x) for x in arr] == sorted({datacomp_uid(a), datacomp_uid(b)})
    pool = datacomp_uid_array([datacomp_uid(f"{i:032x}") for i in (1, 5, 9, 2**70, 2**70 + 3)])
    removed = datacomp_uid_array([datacomp_uid(f"{i:032x}") for i in (5, 2**70 + 3, 7)])
    kept = subtract_uids(pool, removed)
    assert [int(x[0]) << 64 | int(x[1]) for x in kept] == [1, 9, 2**70]
