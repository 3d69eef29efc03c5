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


def _keys(table) -> list[str]:
    return table.column("key").to_pylist()


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
    by_row = dict(zip(_keys(flags), flags.column("reasons").to_pylist(), strict=True))
    for wanted in (["hateful-caption"], ["offensive-caption"], ["hateful-caption", "offensive-caption"]):
        got = _keys(filter_flags(flags, reasons=wanted))
        assert got == [k for k, reasons in by_row.items() if set(reasons) & set(wanted)]
        assert got
    assert _keys(filter_flags(flags, reasons=["no-such-reason"])) == []
    # no reasons selected means no reason filter, as with an empty multiselect
    assert _keys(filter_flags(flags, reasons=[])) == _keys(flags)
    assert _keys(filter_flags(flags)) == _keys(flags)


def test_filter_flags_by_minimum_severity(run_dir: Path) -> None:
    flags = load_run(str(run_dir)).flags
    rank = dict(zip(_keys(flags), flags.column("severity_rank").to_pylist(), strict=True))
    for i, severity in enumerate(SEVERITIES):
        assert _keys(filter_flags(flags, min_severity=severity)) == [k for k, r in rank.items() if r >= i]
    assert _keys(filter_flags(flags, min_severity="high"))  # hateful-0 at least
    assert _keys(filter_flags(flags, min_severity="info")) == _keys(flags)
    with pytest.raises(ValueError, match="severity"):
        filter_flags(flags, min_severity="severe")


def test_filter_flags_by_latest_decision_and_filters_combine(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    record_decision(run, "offensive-0", "needs_escalation", "ann")
    record_decision(run, "offensive-0", "false_positive", "bob")
    record_decision(run, "hateful-0", "confirm_harmful", "ann")
    decisions = load_decisions(run)
    flags = run.flags
    assert _keys(filter_flags(flags, decision="false_positive", decisions=decisions)) == ["offensive-0"]
    assert _keys(filter_flags(flags, decision="needs_escalation", decisions=decisions)) == []
    undecided = _keys(filter_flags(flags, decision=UNDECIDED, decisions=decisions))
    assert undecided == [k for k in _keys(flags) if k not in ("offensive-0", "hateful-0")]
    both = filter_flags(
        flags,
        reasons=["offensive-caption"],
        min_severity="high",
        decision="confirm_harmful",
        decisions=decisions,
    )
    assert _keys(both) == ["hateful-0"]
    with pytest.raises(ValueError, match="decisions="):
        filter_flags(flags, decision="false_positive")
    with pytest.raises(ValueError, match="unknown decision"):
        filter_flags(flags, decision="maybe", decisions=decisions)


def test_decisions_are_appended_and_the_latest_wins(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    first = record_decision(run, "offensive-1", "confirm_harmful", "ann", "slur in caption")
    second = record_decision(run, "offensive-1", "false_positive", "bob")
    history = decision_history(run, "offensive-1")
    assert [h.id for h in history] == [first.id, second.id]
    assert [(h.decision, h.reviewer, h.note) for h in history] == [
        ("confirm_harmful", "ann", "slur in caption"),
        ("false_positive", "bob", ""),
    ]
    assert load_decisions(run)["offensive-1"] == second
    for h in history:
        assert dt.datetime.fromisoformat(h.decided_at).utcoffset() == dt.timedelta(0)
    # a new session sees the same rows: they are in decisions.db, not in memory
    assert decision_history(load_run(str(run_dir))) == history


def test_decisions_db_refuses_update_and_delete(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    record_decision(run, "offensive-1", "confirm_harmful", "ann")
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
        ("photo-astronaut", "false_positive", "ann", "not a flagged key"),
    ],
)
def test_invalid_decisions_are_rejected_and_nothing_is_written(
    run_dir: Path, key: str, decision: str, reviewer: str, match: str
) -> None:
    run = load_run(str(run_dir))
    with pytest.raises(ValueError, match=match):
        record_decision(run, key, decision, reviewer)
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
    shard = next(r["shard_id"] for r in run.flags.to_pylist() if r["key"] == key)
    fmt = next(s.format for s in run.manifest.shards if s.shard_id == shard)
    assert fmt in ("img2dataset_parquet", "webdataset")
    blurred, revealed = _pixels(load_image(run, key)), _pixels(load_image(run, key, blur=False))
    assert blurred.shape == revealed.shape
    assert max(blurred.shape) == THUMB_MAX_SIDE  # sample photos are larger than a thumbnail
    assert np.abs(blurred - revealed).mean() > 5
    assert _detail(blurred) < 0.5 * _detail(revealed)


def test_load_image_of_an_unflagged_key_fails(run_dir: Path) -> None:
    with pytest.raises(KeyError, match="not a flagged key"):
        load_image(load_run(str(run_dir)), "photo-astronaut")


def test_load_image_refuses_a_shard_changed_since_the_audit(run_dir: Path, tmp_path: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    record = next(s for s in manifest["shards"] if s["shard_id"] == "00000")
    # same rows, different bytes: the key might now name another image than the one scored
    changed = tmp_path / "00000.parquet"
    pq.write_table(pq.read_table(record["path"]), changed, compression="gzip")
    record["path"] = str(changed)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ImageUnavailableError, match="changed since the audit"):
        load_image(load_run(str(run_dir)), "offensive-0")


def test_flags_frame_shows_latest_decision_and_flat_columns(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    record_decision(run, "offensive-2", "needs_escalation", "ann")
    frame = flags_frame(run.flags, load_decisions(run))
    assert frame["key"].tolist() == _keys(run.flags)
    row = frame.set_index("key").loc["offensive-2"]
    assert row["decision"] == "needs_escalation"
    assert row["reasons"] == "offensive-caption"
    assert "text_offensive_prob=" in row["scores"]


def test_render_blocked_rows_never_yield_a_thumbnail(run_dir: Path) -> None:
    flags = pq.read_table(run_dir / "flags.parquet")
    # mark one row as a known-bad match, as the known-bad stage does
    blocked = pa.array([k == "offensive-0" for k in flags.column("key").to_pylist()], pa.bool_())
    idx = flags.schema.get_field_index("render_blocked")
    flags = (
        flags.set_column(idx, "render_blocked", blocked)
        if idx >= 0
        else flags.append_column("render_blocked", blocked)
    )
    pq.write_table(flags, run_dir / "flags.parquet")
    run = load_run(str(run_dir))
    for blur in (True, False):
        with pytest.raises(ImageUnavailableError, match="never shown"):
            load_image(run, "offensive-0", blur=blur)
    assert load_image(run, "offensive-1")  # the others still show
