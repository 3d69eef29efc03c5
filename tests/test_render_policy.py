"""audit.render_policy: one predicate, computed from the row's own data, decides whether pixels may be
shown. Unit tests on hand-built rows, then real audits whose rules file drops or weakens the
known-bad rule: a known-bad image must stay flagged critical, unrevealable and reported."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image, ImageDraw

from audit.config import packaged_file
from audit.render_policy import NEVER_RENDER_REASONS, may_render, never_render
from audit.report import write_report
from audit.review import ImageUnavailableError, load_image, load_run, render_blocked
from audit.rules import load_rules
from audit.schemas import IMG2DATASET_PARQUET_SCHEMA, Summary

# --- the predicate on hand-built rows -----------------------------------------------------------

BENIGN = {"known_bad_match": False, "render_blocked": False, "reasons": ["offensive-caption"]}


def test_may_render_only_an_explicit_non_match_with_benign_reasons() -> None:
    assert may_render(BENIGN)
    assert not never_render(BENIGN)
    assert may_render({"known_bad_match": False})  # a scores row: no reasons, no render_blocked


@pytest.mark.parametrize(
    "change",
    [
        {"known_bad_match": True},
        {"known_bad_match": True, "reasons": [], "render_blocked": False},  # whatever the rules said
        {"render_blocked": True},  # a rule marked never_render fired
        {"reasons": ["offensive-caption", "csam-risk"]},
        {"reasons": ["known-bad-hash"]},
        {"reasons": "csam-risk"},  # a lone reason string
        {"reasons": None, "reason": "known-bad-hash"},  # a quarantine row's single reason
        {"reasons": None, "reason": "csam-risk"},
    ],
)
def test_never_render_blocks_known_bad_matches_never_render_rules_and_reasons(change: dict) -> None:
    row = {**BENIGN, **change}
    assert never_render(row)
    assert render_blocked(row)  # the review module asks the same predicate
    assert not may_render(row)


@pytest.mark.parametrize(
    "row",
    [
        {**BENIGN, "known_bad_match": None},  # no bytes and no sha256: never matched
        {"render_blocked": False, "reasons": ["offensive-caption"]},  # a row without the column
        {},
    ],
)
def test_may_render_fails_closed_when_the_match_is_unknown(row: dict) -> None:
    assert not never_render(row)  # not listed as known-bad ...
    assert not may_render(row)  # ... but not shown either: nobody checked it against the lists


def test_a_quarantine_row_with_a_benign_reason_is_not_never_render() -> None:
    row = {"known_bad_match": False, "reason": "caption_missing"}
    assert not never_render(row) and may_render(row)


def test_never_render_reasons_are_the_hash_list_and_csam_risk_codes() -> None:
    assert {"known-bad-hash", "csam-risk"} == NEVER_RENDER_REASONS


# --- real audits with a rules file that forgets the known-bad rule ------------------------------

UNDECODABLE = b"\xff\xd8\xff\xe0 bytes no decoder accepts, listed by their sha256"
OFFENSIVE = "what a dumb bitch"


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _known_bad_image() -> bytes:
    im = Image.new("RGB", (224, 224), (255, 255, 255))
    ImageDraw.Draw(im).rectangle((40, 40, 180, 180), fill=(30, 60, 200))
    return _jpeg(im)


def _photo(name: str) -> bytes:
    import skimage.data

    im = Image.fromarray(getattr(skimage.data, name)())
    im.thumbnail((320, 320))
    return _jpeg(im)


KNOWN_BAD = _known_bad_image()
# key -> (caption, image bytes, the dataset's sha256 column or None for the bytes' own); the
# known-bad rows are the kb-* keys
ROWS: dict[str, tuple[str | None, bytes, str | None]] = {
    "kb-captioned": ("a blue square", KNOWN_BAD, None),
    "kb-no-caption": (None, KNOWN_BAD, None),  # audited image-only
    # a stranger's sha256 column must not hide the bytes' own digest
    "kb-wrong-sha256": ("a blue square", KNOWN_BAD, hashlib.sha256(b"something else").hexdigest()),
    "kb-undecodable": (None, UNDECODABLE, None),  # quarantined: neither side usable
    "kb-undecodable-captioned": ("a photo", UNDECODABLE, None),  # audited text-only
    "benign-flagged": (OFFENSIVE, _photo("chelsea"), None),
    "benign": ("a cup of coffee on a saucer", _photo("coffee"), None),
}
KNOWN_BAD_KEYS = sorted(k for k in ROWS if k.startswith("kb-"))


def write_img2dataset_parquet(path: Path, rows: list[tuple[str, str | None, bytes, str | None]]) -> None:
    """An img2dataset output parquet (jpg bytes inline) from (key, caption, bytes, sha256) rows;
    a None sha256 is the bytes' own, as img2dataset writes it."""
    cols: dict[str, list] = {name: [] for name in IMG2DATASET_PARQUET_SCHEMA.names}
    for key, caption, data, sha in rows:
        values = {
            "key": key, "url": f"http://x.invalid/{key}.jpg", "caption": caption, "status": "success",
            "error_message": None, "width": None, "height": None, "original_width": None,
            "original_height": None, "exif": None, "sha256": sha or hashlib.sha256(data).hexdigest(),
            "jpg": data,
        }  # fmt: skip
        for name, value in values.items():
            cols[name].append(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols, schema=IMG2DATASET_PARQUET_SCHEMA), path)


def rules_without_clip(change: Callable[[list[dict]], list[dict]]) -> dict:
    """The default rules less the CLIP-based ones (the tiny test CLIP's random weights would make its
    probes fire at random), edited by ``change``."""
    clip_based = {r.id for r in load_rules("default").rules if r.clip_based}
    rules = yaml.safe_load(packaged_file("rules", "default.yaml").read_text())
    rules["rules"] = change([r for r in rules["rules"] if r["id"] not in clip_based])
    return rules


def _drop_hash_rule(rules: list[dict]) -> list[dict]:
    return [r for r in rules if r["id"] != "known-bad-hash"]


def _weaken_hash_rule(rules: list[dict]) -> list[dict]:
    for r in rules:
        if r["id"] == "known-bad-hash":
            # low, renderable, and a reason code the never-render reasons do not know
            r.update(severity="low", never_render=False, reason="hash-list-hit")
    return rules


@pytest.fixture(scope="module", params=["hash-rule-dropped", "hash-rule-weakened"])
def forgetful_run(
    request: pytest.FixtureRequest,
    make_config: Callable[..., object],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A real audit of one img2dataset shard holding known-bad images, whose rules file drops the
    known-bad-hash rule, or keeps it at severity low with never_render false."""
    from audit.pipelines.audit_run import run_audit

    root = tmp_path_factory.mktemp(request.param)
    write_img2dataset_parquet(root / "shards" / "00000.parquet", [(k, *v) for k, v in ROWS.items()])
    known_bad = root / "known_bad.csv"
    known_bad.write_text(
        "algorithm,hash,label\n"
        f"sha256,{hashlib.sha256(KNOWN_BAD).hexdigest()},test-exact\n"
        f"sha256,{hashlib.sha256(UNDECODABLE).hexdigest()},test-undecodable\n"
    )
    change = _drop_hash_rule if request.param == "hash-rule-dropped" else _weaken_hash_rule
    rules = root / "rules.yaml"
    rules.write_text(yaml.safe_dump(rules_without_clip(change)))
    out = root / "run"
    cfg = make_config(
        shards=[str(root / "shards")],
        out=str(out),
        rules=str(rules),
        **{"images.known_bad_lists": [str(known_bad)], "neighbours.enabled": False},
    )
    run_audit(cfg)
    return out


@pytest.fixture
def forgetful_dir(forgetful_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(forgetful_run, tmp_path / "run"))


def _by_key(table: pa.Table) -> dict[str, dict]:
    return {r["key"]: r for r in table.to_pylist()}


def test_known_bad_images_are_flagged_critical_whatever_the_rules_file_says(forgetful_run: Path) -> None:
    flags = _by_key(pq.read_table(forgetful_run / "flags.parquet"))
    assert sorted(k for k in flags if k.startswith("kb-")) == KNOWN_BAD_KEYS
    for key in KNOWN_BAD_KEYS:
        f = flags[key]
        assert f["severity"] == "critical", (key, f["severity"], f["rules"])
        assert "known-bad-hash" in f["reasons"], (key, f["reasons"])
        assert f["known_bad_match"] is True and f["render_blocked"] is True, key
        assert f["known_bad_list"].startswith("known_bad.csv:sha256:test-"), key
    for key in ("kb-captioned", "kb-no-caption"):
        assert flags[key]["sha256"] == hashlib.sha256(KNOWN_BAD).hexdigest()
    for key in ("kb-undecodable", "kb-undecodable-captioned"):
        assert flags[key]["sha256"] == hashlib.sha256(UNDECODABLE).hexdigest()
    # matched by the bytes' own digest although the dataset's sha256 column names other bytes
    assert flags["kb-wrong-sha256"]["known_bad_list"] == "known_bad.csv:sha256:test-exact"
    assert flags["benign-flagged"]["known_bad_match"] is False
    assert not flags["benign-flagged"]["render_blocked"]
    assert "benign" not in flags


def test_rows_are_audited_on_their_usable_side_and_only_the_unusable_one_is_quarantined(
    forgetful_run: Path,
) -> None:
    scores = _by_key(pq.read_table(forgetful_run / "scores" / "00000.parquet"))
    quarantine = _by_key(pq.read_table(forgetful_run / "quarantine.parquet"))
    assert sorted(quarantine) == ["kb-undecodable"]
    q = quarantine["kb-undecodable"]
    assert q["reason"] == "image_undecodable" and q["known_bad_match"] is True
    assert q["known_bad_list"] == "known_bad.csv:sha256:test-undecodable"
    assert scores["kb-no-caption"]["caption_problem"] == "caption_missing"  # image-only
    assert scores["kb-no-caption"]["image_problem"] is None
    assert scores["kb-undecodable-captioned"]["image_problem"] == "image_undecodable"  # text-only
    assert scores["kb-undecodable-captioned"]["caption_problem"] is None
    summary = Summary.model_validate_json((forgetful_run / "summary.json").read_text())
    assert (summary.rows_in, summary.rows_scored, summary.rows_quarantined) == (len(ROWS), len(ROWS) - 1, 1)
    assert summary.rows_image_only == 1
    assert summary.flags_by_severity["critical"] == len(KNOWN_BAD_KEYS)


def test_known_bad_images_are_never_revealed_whatever_the_rules_file_says(forgetful_dir: Path) -> None:
    run = load_run(str(forgetful_dir))
    flags = _by_key(run.flags)
    for key in KNOWN_BAD_KEYS:
        assert render_blocked(flags[key]) and not may_render(flags[key])
        for blur in (True, False):
            with pytest.raises(ImageUnavailableError, match="never rendered"):
                load_image(run, flags[key]["row_id"], blur=blur)
    # the benign flagged row of the same shard still shows: not everything is blocked
    shown = Image.open(io.BytesIO(load_image(run, flags["benign-flagged"]["row_id"], blur=False)))
    assert shown.format == "JPEG" and max(shown.size) == 256


def test_known_bad_images_reach_the_authority_report_and_only_a_count_reaches_the_html(
    forgetful_dir: Path,
) -> None:
    write_report(str(forgetful_dir))
    run = load_run(str(forgetful_dir))
    flags = _by_key(run.flags)
    with open(forgetful_dir / "report" / "authority_report.csv", newline="") as f:
        authority = list(csv.DictReader(f))
    assert sorted(r["key"] for r in authority) == KNOWN_BAD_KEYS
    for r in authority:
        assert r["row_id"] == flags[r["key"]]["row_id"]
        assert r["sha256"] == flags[r["key"]]["sha256"] and len(r["sha256"]) == 64
        # the bytes' own digest, whatever the dataset's sha256 column claimed
        data = ROWS[r["key"]][1] if r["key"] in ROWS else None
        if data:
            assert r["sha256"] == hashlib.sha256(data).hexdigest(), r["key"]
        assert r["known_bad_list"].startswith("known_bad.csv:sha256:")
        assert "known-bad-hash" in r["reasons"].split(";") and r["severity"] == "critical"
    page = (forgetful_dir / "report" / "report.html").read_text()
    for key in KNOWN_BAD_KEYS:
        assert key not in page and flags[key]["row_id"] not in page, key
    assert flags["benign-flagged"]["row_id"] in page and "benign-flagged" in page
    never = re.search(r'<p id="never-rendered">(.*?)</p>', page, re.S)
    assert never is not None
    assert never.group(1).split()[0] == str(len(KNOWN_BAD_KEYS))
    # the removal list still names them (by row id and key, with no image)
    removal = (forgetful_dir / "report" / "removal_list.txt").read_text().splitlines()
    removed = {line.split("\t")[0] for line in removal}
    assert {flags[k]["row_id"] for k in KNOWN_BAD_KEYS} <= removed
