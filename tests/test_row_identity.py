"""Rows are picked by row_id (``<shard_id>:<row_index>``), never by the dataset's key.

A real audit of two img2dataset output folders, each numbered from 000000000 as img2dataset does,
so keys repeat across shards (and once inside a shard): reveal, decisions, history, the removal
list, the authority report and summary.json must each name one row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image, ImageDraw

from audit.config import packaged_file
from audit.report import write_report
from audit.review import (
    THUMB_MAX_SIDE,
    UNDECIDED,
    ImageUnavailableError,
    decision_history,
    filter_flags,
    flag_row,
    flags_frame,
    load_decisions,
    load_image,
    load_run,
    record_decision,
)
from audit.row_identity import row_id, row_ids_for, split_row_id
from audit.rules import load_rules
from audit.schemas import IMG2DATASET_PARQUET_SCHEMA, Summary

# --- the id itself ------------------------------------------------------------------------------


def test_row_id_is_shard_and_row_index_and_splits_at_the_last_colon() -> None:
    assert row_id("b__00000", 7) == "b__00000:7"
    assert split_row_id("b__00000:7") == ("b__00000", 7)
    assert split_row_id("s3:bucket:part:12") == ("s3:bucket:part", 12)  # shard ids may hold ':'
    assert row_ids_for("a", 3, 2).to_pylist() == ["a:3", "a:4"]
    assert row_ids_for("a", 0, 0).to_pylist() == []


@pytest.mark.parametrize("value", ["000000000", "a:", ":3", "a:-1", "a:1x", ""])
def test_split_row_id_rejects_what_is_not_a_row_id(value: str) -> None:
    with pytest.raises(ValueError, match="is not a row id"):
        split_row_id(value)


# --- two img2dataset folders whose keys repeat --------------------------------------------------

OFFENSIVE = ("what a dumb bitch", "this cat is a piece of shit", "stupid fucking idiot with a camera")


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _photo(name: str) -> bytes:
    import skimage.data

    im = Image.fromarray(getattr(skimage.data, name)())
    im.thumbnail((320, 320))
    return _jpeg(im)


def _known_bad_image() -> bytes:
    im = Image.new("RGB", (224, 224), (255, 255, 255))
    ImageDraw.Draw(im).rectangle((40, 40, 180, 180), fill=(30, 60, 200))
    return _jpeg(im)


KNOWN_BAD = _known_bad_image()
# folder -> rows (key, caption, image); img2dataset numbers keys per output folder
FOLDERS: dict[str, list[tuple[str, str, bytes]]] = {
    "a": [
        ("000000000", OFFENSIVE[0], _photo("chelsea")),  # flagged, benign image
        ("000000001", "a cup of coffee on a saucer", _photo("coffee")),  # not flagged
        ("000000000", "a blue square", KNOWN_BAD),  # the same key later in the same shard
        ("000000002", OFFENSIVE[2], _photo("camera")),
    ],
    "b": [
        ("000000000", "a blue square", KNOWN_BAD),
        ("000000001", OFFENSIVE[1], _photo("rocket")),
        ("000000002", OFFENSIVE[0], _photo("astronaut")),
        ("000000004", "old coins on a dark background", _photo("coins")),
        ("000000004", "the surface of the moon", _photo("moon")),  # repeats only inside this shard
    ],
}
SHARD_IDS = {"a": "a__00000", "b": "b__00000"}  # the stems collide, so the folder is prefixed
ROWS_IN = sum(len(rows) for rows in FOLDERS.values())
# 4 distinct keys (0, 1, 2, 4) over 9 rows; 0, 1 and 2 are in both shards
KEYS_REPEATED, KEYS_IN_SEVERAL_SHARDS = 5, 3


def _rid(folder: str, index: int) -> str:
    return f"{SHARD_IDS[folder]}:{index}"


BENIGN_FLAGGED = [_rid("a", 0), _rid("a", 3), _rid("b", 1), _rid("b", 2)]
KNOWN_BAD_ROWS = [_rid("a", 2), _rid("b", 0)]


def _image_of(rid: str) -> bytes:
    shard, index = split_row_id(rid)
    folder = next(f for f, s in SHARD_IDS.items() if s == shard)
    return FOLDERS[folder][index][2]


def write_shard(path: Path, rows: list[tuple[str, str, bytes]]) -> None:
    cols: dict[str, list] = {name: [] for name in IMG2DATASET_PARQUET_SCHEMA.names}
    for key, caption, data in rows:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
        values = {
            "key": key, "url": f"http://x.invalid/{path.parent.name}/{key}.jpg", "caption": caption,
            "status": "success", "error_message": None, "width": w, "height": h, "original_width": w,
            "original_height": h, "exif": None, "sha256": hashlib.sha256(data).hexdigest(), "jpg": data,
        }  # fmt: skip
        for name, value in values.items():
            cols[name].append(value)
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table(cols, schema=IMG2DATASET_PARQUET_SCHEMA), path)


@pytest.fixture(scope="module")
def repeated_keys_run(make_config: Callable[..., object], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from audit.pipelines.audit_run import run_audit

    root = tmp_path_factory.mktemp("repeated_keys")
    for folder, rows in FOLDERS.items():
        write_shard(root / "shards" / folder / "00000.parquet", rows)
    known_bad = root / "known_bad.csv"
    known_bad.write_text(f"algorithm,hash,label\nsha256,{hashlib.sha256(KNOWN_BAD).hexdigest()},test\n")
    # default rules less the CLIP-based ones: the tiny test CLIP's random probes would fire at random
    clip_based = {r.id for r in load_rules("default").rules if r.clip_based}
    rules = yaml.safe_load(packaged_file("rules", "default.yaml").read_text())
    rules["rules"] = [r for r in rules["rules"] if r["id"] not in clip_based]
    (root / "rules.yaml").write_text(yaml.safe_dump(rules))
    out = root / "run"
    cfg = make_config(
        shards=[str(root / "shards" / f) for f in FOLDERS],
        out=str(out),
        rules=str(root / "rules.yaml"),
        **{"images.known_bad_lists": [str(known_bad)], "neighbours.enabled": False},
    )
    run_audit(cfg)
    return out


@pytest.fixture
def run_dir(repeated_keys_run: Path, tmp_path: Path) -> Path:
    """A private copy: decisions written by one test never leak into another."""
    return Path(shutil.copytree(repeated_keys_run, tmp_path / "run"))


def test_every_row_keeps_its_own_row_id_although_keys_repeat(repeated_keys_run: Path) -> None:
    run = load_run(str(repeated_keys_run))
    assert {s.shard_id for s in run.manifest.shards} == set(SHARD_IDS.values())
    for folder, rows in FOLDERS.items():
        scores = pq.read_table(repeated_keys_run / "scores" / f"{SHARD_IDS[folder]}.parquet")
        assert scores.column("row_id").to_pylist() == [_rid(folder, i) for i in range(len(rows))]
        assert scores.column("key").to_pylist() == [k for k, _, _ in rows]
    assert sorted(run.flags.column("row_id").to_pylist()) == sorted(BENIGN_FLAGGED + KNOWN_BAD_ROWS)
    for rid in KNOWN_BAD_ROWS:
        assert flag_row(run, rid)["severity"] == "critical" and flag_row(run, rid)["render_blocked"]
    assert flag_row(run, _rid("a", 0))["key"] == flag_row(run, _rid("b", 0))["key"] == "000000000"
    assert flags_frame(run.flags)["row_id"].tolist() == run.flags.column("row_id").to_pylist()


def test_repeated_keys_are_counted_not_quarantined(repeated_keys_run: Path) -> None:
    s = Summary.model_validate_json((repeated_keys_run / "summary.json").read_text())
    assert (s.rows_in, s.rows_scored, s.rows_quarantined) == (ROWS_IN, ROWS_IN, 0)
    assert (s.keys_repeated, s.keys_in_several_shards) == (KEYS_REPEATED, KEYS_IN_SEVERAL_SHARDS)
    assert any(
        f"{KEYS_IN_SEVERAL_SHARDS} dataset keys appear in more than one shard" in w for w in s.warnings
    )


def _thumb(data: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    im.thumbnail((THUMB_MAX_SIDE, THUMB_MAX_SIDE))
    return np.asarray(im, dtype=np.float64)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference, b resized to a's shape when the sizes differ."""
    if a.shape != b.shape:
        resized = Image.fromarray(b.astype(np.uint8)).resize((a.shape[1], a.shape[0]))
        b = np.asarray(resized, dtype=np.float64)
    return float(np.abs(a - b).mean())


@pytest.mark.parametrize("rid", BENIGN_FLAGGED)
def test_reveal_shows_the_rows_own_image_never_a_same_key_one(repeated_keys_run: Path, rid: str) -> None:
    run = load_run(str(repeated_keys_run))
    key = flag_row(run, rid)["key"]
    revealed = _thumb(load_image(run, rid, blur=False))
    own = _thumb(_image_of(rid))
    assert revealed.shape == own.shape
    assert _distance(revealed, own) < 4  # only the thumbnail's JPEG re-encoding
    same_key = [
        other
        for folder, rows in FOLDERS.items()
        for i, (k, _, _) in enumerate(rows)
        if k == key and (other := _rid(folder, i)) != rid
    ]
    assert same_key  # every benign flagged row shares its key with another row
    for other in same_key:
        assert _distance(revealed, _thumb(_image_of(other))) > 20, other
    assert _distance(revealed, _thumb(KNOWN_BAD)) > 20


def test_same_key_known_bad_rows_are_never_revealed(repeated_keys_run: Path) -> None:
    run = load_run(str(repeated_keys_run))
    for rid in KNOWN_BAD_ROWS:
        for blur in (True, False):
            with pytest.raises(ImageUnavailableError, match="never rendered"):
                load_image(run, rid, blur=blur)
    with pytest.raises(KeyError, match="not a flagged row"):
        load_image(run, _rid("a", 1))  # unflagged, though key 000000001 is flagged in shard b
    with pytest.raises(KeyError, match="not a flagged row"):
        load_image(run, "000000000")  # a key is not a row id


def test_decisions_and_history_are_per_row_id(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    first = record_decision(run, _rid("a", 0), "confirm_harmful", "ann", "slur")
    other = record_decision(run, _rid("b", 0), "needs_escalation", "bob")
    assert (first.key, other.key) == ("000000000", "000000000")
    assert decision_history(run, _rid("a", 0)) == [first]
    assert decision_history(run, _rid("b", 0)) == [other]
    assert decision_history(run, _rid("a", 2)) == []  # same key, same shard, undecided
    assert decision_history(run, "000000000") == []  # a key picks nothing
    decisions = load_decisions(run)
    assert set(decisions) == {_rid("a", 0), _rid("b", 0)}
    assert decisions[_rid("a", 0)].decision == "confirm_harmful"
    assert decisions[_rid("b", 0)].decision == "needs_escalation"
    undecided = filter_flags(run.flags, decision=UNDECIDED, decisions=decisions).column("row_id").to_pylist()
    assert sorted(undecided) == sorted(set(BENIGN_FLAGGED + KNOWN_BAD_ROWS) - {_rid("a", 0), _rid("b", 0)})
    frame = flags_frame(run.flags, decisions).set_index("row_id")
    assert frame.loc[_rid("a", 0), "decision"] == "confirm_harmful"
    assert frame.loc[_rid("a", 2), "decision"] == ""
    # a:1 is unflagged while its key is flagged in b: decidable as itself (a scored row), and the
    # decision names a:1 alone, never the same-key row of b
    third = record_decision(run, _rid("a", 1), "false_positive", "ann")
    assert (third.row_id, third.key) == (_rid("a", 1), "000000001")
    assert set(load_decisions(run)) == {_rid("a", 0), _rid("b", 0), _rid("a", 1)}
    assert decision_history(run, _rid("b", 1)) == []
    with pytest.raises(ValueError, match="neither a flagged nor a scored row"):
        record_decision(run, _rid("a", 10_000), "false_positive", "ann")  # no such row
    assert len(decision_history(run)) == 3


def _removal(run_dir: Path) -> dict[str, list[str]]:
    rows = [line.split("\t") for line in (run_dir / "report" / "removal_list.txt").read_text().splitlines()]
    assert all(len(r) == 5 for r in rows), rows
    return {r[0]: r[1:] for r in rows}


def test_a_false_positive_keeps_the_same_key_row_of_another_shard_on_the_removal_list(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    assert flag_row(run, _rid("a", 3))["key"] == flag_row(run, _rid("b", 2))["key"] == "000000002"
    record_decision(run, _rid("a", 3), "false_positive", "ann")
    write_report(str(run_dir))
    removal = _removal(run_dir)
    assert _rid("a", 3) not in removal
    assert removal[_rid("b", 2)][0] == "000000002"
    # both known-bad rows share key 000000000 with a:0, and each has its own line
    assert {*KNOWN_BAD_ROWS, _rid("a", 0), _rid("b", 1)} <= set(removal)
    assert [removal[r][0] for r in KNOWN_BAD_ROWS] == ["000000000", "000000000"]
    assert set(removal) == set(BENIGN_FLAGGED + KNOWN_BAD_ROWS) - {_rid("a", 3)}


def test_report_shows_repeated_keys_and_names_rows_by_row_id(run_dir: Path) -> None:
    write_report(str(run_dir))
    page = (run_dir / "report" / "report.html").read_text()
    para = re.search(r'<p id="repeated-keys">(.*?)</p>', page, re.S)
    assert para is not None
    text = " ".join(para.group(1).split())
    assert f"{KEYS_REPEATED} rows repeat an earlier row" in text
    assert f"{KEYS_IN_SEVERAL_SHARDS} keys appear in more than one shard" in text
    for rid in BENIGN_FLAGGED:
        assert f"<code>{rid}</code>" in page
    for rid in KNOWN_BAD_ROWS:
        assert rid not in page  # counted only, listed in authority_report.csv
    with open(run_dir / "report" / "authority_report.csv", newline="") as f:
        authority = list(csv.DictReader(f))
    assert sorted(r["row_id"] for r in authority) == sorted(KNOWN_BAD_ROWS)
    assert {r["key"] for r in authority} == {"000000000"}
    assert {r["sha256"] for r in authority} == {hashlib.sha256(KNOWN_BAD).hexdigest()}
