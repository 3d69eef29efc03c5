"""audit.review against a real audit of the sample corpus (the shared `sample_run` fixture)."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from audit.errors import AuditError, InputFileError
from audit.review import (
    THUMB_MAX_SIDE,
    UNDECIDED,
    ImageUnavailableError,
    decision_history,
    filter_flags,
    flags_frame,
    load_decisions,
    load_image,
    load_run,
    record_decision,
)
from audit.schemas import FLAGS_SCHEMA, SEVERITIES


@pytest.fixture
def run_dir(sample_run: Path, tmp_path: Path) -> Path:
    """A private copy of the shared run: decisions written by one test never leak into another."""
    return Path(shutil.copytree(sample_run, tmp_path / "sample"))


def _ids(table: pa.Table) -> list[str]:
    return table.column("row_id").to_pylist()


def _rid(run_dir: Path, key: str) -> str:
    """The row id of a sample row by its key (keys are unique in the sample corpus), flagged or not."""
    for path in [*sorted((run_dir / "scores").glob("*.parquet")), run_dir / "quarantine.parquet"]:
        t = pq.read_table(path, columns=["row_id", "key"])
        at = pc.index(t.column("key"), key).as_py()
        if at >= 0:
            return t.column("row_id")[at].as_py()
    raise AssertionError(f"{key} is not a row of the sample run")


def test_load_run_reads_summary_manifest_and_flags(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    assert run.name == "sample"
    assert run.flags.schema.names == FLAGS_SCHEMA.names
    assert run.flags.num_rows == run.summary.rows_flagged > 0
    assert {s.shard_id for s in run.manifest.shards} == {"00000", "00001", "00002"}


def test_load_run_without_summary_fails_with_one_clear_line(run_dir: Path) -> None:
    (run_dir / "summary.json").unlink()
    with pytest.raises(AuditError, match=r"summary\.json") as err:
        load_run(str(run_dir))
    assert isinstance(err.value, InputFileError)
    assert "\n" not in str(err.value)


def test_load_run_of_a_missing_folder_fails(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"no summary\.json"):
        load_run(str(tmp_path / "nope"))


def test_filter_flags_by_reason_keeps_rows_with_any_listed_reason(run_dir: Path) -> None:
    flags = load_run(str(run_dir)).flags
    by_row = dict(zip(_ids(flags), flags.column("reasons").to_pylist(), strict=True))
    for wanted in (["hateful-caption"], ["offensive-caption"], ["hateful-caption", "offensive-caption"]):
        got = _ids(filter_flags(flags, reasons=wanted))
        assert got == [k for k, reasons in by_row.items() if set(reasons) & set(wanted)]
        assert got
    assert _ids(filter_flags(flags, reasons=["no-such-reason"])) == []
    # no reasons selected means no reason filter, as with an empty multiselect
    assert _ids(filter_flags(flags, reasons=[])) == _ids(flags)
    assert _ids(filter_flags(flags)) == _ids(flags)


def test_filter_flags_by_minimum_severity(run_dir: Path) -> None:
    flags = load_run(str(run_dir)).flags
    rank = dict(zip(_ids(flags), flags.column("severity_rank").to_pylist(), strict=True))
    for i, severity in enumerate(SEVERITIES):
        assert _ids(filter_flags(flags, min_severity=severity)) == [k for k, r in rank.items() if r >= i]
    assert _ids(filter_flags(flags, min_severity="high"))  # hateful-0 at least
    assert _ids(filter_flags(flags, min_severity="info")) == _ids(flags)
    with pytest.raises(ValueError, match="severity"):
        filter_flags(flags, min_severity="severe")


def test_filter_flags_by_latest_decision_and_filters_combine(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    off0, hate0 = _rid(run_dir, "offensive-0"), _rid(run_dir, "hateful-0")
    record_decision(run, off0, "needs_escalation", "ann")
    record_decision(run, off0, "false_positive", "bob")
    record_decision(run, hate0, "confirm_harmful", "ann")
    decisions = load_decisions(run)
    flags = run.flags
    assert _ids(filter_flags(flags, decision="false_positive", decisions=decisions)) == [off0]
    assert _ids(filter_flags(flags, decision="needs_escalation", decisions=decisions)) == []
    undecided = _ids(filter_flags(flags, decision=UNDECIDED, decisions=decisions))
    assert undecided == [r for r in _ids(flags) if r not in (off0, hate0)]
    both = filter_flags(
        flags,
        reasons=["offensive-caption"],
        min_severity="high",
        decision="confirm_harmful",
        decisions=decisions,
    )
    assert _ids(both) == [hate0]
    with pytest.raises(ValueError, match="decisions="):
        filter_flags(flags, decision="false_positive")
    with pytest.raises(ValueError, match="unknown decision"):
        filter_flags(flags, decision="maybe", decisions=decisions)


def test_decisions_are_appended_and_the_latest_wins(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    off1 = _rid(run_dir, "offensive-1")
    first = record_decision(run, off1, "confirm_harmful", "ann", "slur in caption")
    second = record_decision(run, off1, "false_positive", "bob")
    history = decision_history(run, off1)
    assert [h.id for h in history] == [first.id, second.id]
    assert [(h.decision, h.reviewer, h.note) for h in history] == [
        ("confirm_harmful", "ann", "slur in caption"),
        ("false_positive", "bob", ""),
    ]
    assert load_decisions(run) == {off1: second}
    assert (second.row_id, second.key) == (off1, "offensive-1")
    for h in history:
        assert dt.datetime.fromisoformat(h.decided_at).utcoffset() == dt.timedelta(0)
    # a new session sees the same rows: they are in decisions.db, not in memory
    assert decision_history(load_run(str(run_dir))) == history


def test_decisions_db_refuses_update_and_delete(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    record_decision(run, _rid(run_dir, "offensive-1"), "confirm_harmful", "ann")
    with sqlite3.connect(run_dir / "decisions.db") as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE decisions SET decision = 'false_positive'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM decisions")
    assert len(decision_history(run)) == 1


@pytest.mark.parametrize(
    ("key", "decision", "reviewer", "match"),
    [
        ("offensive-1", "delete_it", "ann", "unknown decision"),
        ("offensive-1", "", "ann", "unknown decision"),
        ("offensive-1", "false_positive", "  ", "reviewer"),
        # quarantined, so neither flagged nor scored (an unflagged scored row may be decided)
        ("bad-zero-bytes-blank-caption", "false_positive", "ann", "neither a flagged nor a scored row"),
    ],
)
def test_invalid_decisions_are_rejected_and_nothing_is_written(
    run_dir: Path, key: str, decision: str, reviewer: str, match: str
) -> None:
    run = load_run(str(run_dir))
    with pytest.raises(ValueError, match=match):
        record_decision(run, _rid(run_dir, key), decision, reviewer)
    assert decision_history(run) == []


def test_reading_decisions_never_creates_the_database(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    assert load_decisions(run) == {}
    assert not (run_dir / "decisions.db").exists()


def _pixels(data: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG"
    assert max(im.size) <= THUMB_MAX_SIDE
    return np.asarray(im.convert("L"), dtype=np.float64)


def _detail(pixels: np.ndarray) -> float:
    """Mean absolute difference of neighbouring pixels: edges and texture; blur removes it."""
    return float(np.abs(np.diff(pixels, axis=0)).mean() + np.abs(np.diff(pixels, axis=1)).mean())


@pytest.mark.parametrize("key", ["offensive-0", "offensive-2"])  # a parquet shard and the webdataset tar
def test_thumbnail_is_blurred_until_revealed(run_dir: Path, key: str) -> None:
    run = load_run(str(run_dir))
    rid = _rid(run_dir, key)
    shard = next(r["shard_id"] for r in run.flags.to_pylist() if r["row_id"] == rid)
    fmt = next(s.format for s in run.manifest.shards if s.shard_id == shard)
    assert fmt in ("img2dataset_parquet", "webdataset")
    blurred, revealed = _pixels(load_image(run, rid)), _pixels(load_image(run, rid, blur=False))
    assert blurred.shape == revealed.shape
    assert max(blurred.shape) == THUMB_MAX_SIDE  # sample photos are larger than a thumbnail
    assert np.abs(blurred - revealed).mean() > 5
    assert _detail(blurred) < 0.5 * _detail(revealed)


def test_load_image_of_an_unflagged_row_or_of_a_key_fails(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    with pytest.raises(KeyError, match="not a flagged row"):
        load_image(run, _rid(run_dir, "photo-astronaut"))
    with pytest.raises(KeyError, match="not a flagged row"):
        load_image(run, "offensive-0")  # a flagged row's key does not pick it


def test_load_image_refuses_a_shard_changed_since_the_audit(run_dir: Path, tmp_path: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    record = next(s for s in manifest["shards"] if s["shard_id"] == "00000")
    # same rows, different bytes: the row's position might now hold another image than the one scored
    changed = tmp_path / "00000.parquet"
    pq.write_table(pq.read_table(record["path"]), changed, compression="gzip")
    record["path"] = str(changed)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ImageUnavailableError, match="changed since the audit"):
        load_image(load_run(str(run_dir)), _rid(run_dir, "offensive-0"))


def test_flags_frame_shows_latest_decision_and_flat_columns(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    off2 = _rid(run_dir, "offensive-2")
    record_decision(run, off2, "needs_escalation", "ann")
    frame = flags_frame(run.flags, load_decisions(run))
    assert frame["row_id"].tolist() == _ids(run.flags)
    assert frame["key"].tolist() == run.flags.column("key").to_pylist()
    row = frame.set_index("row_id").loc[off2]
    assert row["key"] == "offensive-2"
    assert row["decision"] == "needs_escalation"
    assert row["reasons"] == "offensive-caption"
    assert "text_offensive_prob=" in row["scores"]


def _set_flag_column(run_dir: Path, name: str, key: str, value: object) -> None:
    """Rewrite flags.parquet with ``name`` set to ``value`` on ``key``'s row."""
    flags = pq.read_table(run_dir / "flags.parquet")
    old = flags.column(name).to_pylist()
    new = [value if k == key else v for k, v in zip(flags.column("key").to_pylist(), old, strict=True)]
    field = flags.schema.field(name)
    flags = flags.set_column(flags.schema.get_field_index(name), field, pa.array(new, field.type))
    pq.write_table(flags, run_dir / "flags.parquet")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("render_blocked", True),  # a never-render rule fired
        ("known_bad_match", True),  # a hash-list match whose rule forgot never_render
        ("known_bad_match", None),  # never checked against the lists: fails closed
    ],
)
def test_rows_the_policy_blocks_never_yield_a_thumbnail(run_dir: Path, column: str, value: object) -> None:
    _set_flag_column(run_dir, column, "offensive-0", value)
    run = load_run(str(run_dir))
    for blur in (True, False):
        with pytest.raises(ImageUnavailableError, match="never rendered"):
            load_image(run, _rid(run_dir, "offensive-0"), blur=blur)
    assert load_image(run, _rid(run_dir, "offensive-1"))  # the others still show


def test_the_samples_known_bad_rows_are_never_revealed(run_dir: Path) -> None:
    from audit.sample import planted_cases

    run = load_run(str(run_dir))
    flagged = {r["key"]: r for r in run.flags.to_pylist()}
    for key in planted_cases()["known_bad"]:  # with and without caption, and undecodable
        assert flagged[key]["render_blocked"] and flagged[key]["known_bad_match"] is True, key
        for blur in (True, False):
            with pytest.raises(ImageUnavailableError, match="never rendered"):
                load_image(run, flagged[key]["row_id"], blur=blur)


def test_load_run_refuses_flags_written_before_row_ids(run_dir: Path) -> None:
    flags = pq.read_table(run_dir / "flags.parquet")
    pq.write_table(flags.drop_columns(["row_id"]), run_dir / "flags.parquet")
    with pytest.raises(InputFileError, match="older mmaudit") as err:
        load_run(str(run_dir))
    assert "\n" not in str(err.value)


def test_a_decisions_db_keyed_by_dataset_key_is_refused_not_mixed_in(run_dir: Path) -> None:
    with sqlite3.connect(run_dir / "decisions.db") as conn:  # what an older mmaudit wrote
        conn.execute(
            "CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL,"
            " decision TEXT NOT NULL, reviewer TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',"
            " decided_at TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO decisions (key, decision, reviewer, decided_at)"
            " VALUES ('offensive-0', 'false_positive', 'ann', '2026-01-01T00:00:00+00:00')"
        )
    conn.close()
    run = load_run(str(run_dir))
    with pytest.raises(InputFileError, match="keyed by dataset key"):
        load_decisions(run)
    with pytest.raises(InputFileError, match="keyed by dataset key"):
        record_decision(run, _rid(run_dir, "offensive-0"), "confirm_harmful", "bob")
