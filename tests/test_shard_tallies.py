"""Shard tasks count the summary's figures as they score (image status, download outcome,
languages); finalize adds those up and reads no score file back. Checked against a plain per-row
count of the files the run wrote."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audit.cascade import SKIPPED
from audit.schemas import ShardRecord, Summary


def _reference(scores: list[dict], flags: list[dict]) -> dict:
    """The figures by the plain per-row rule, from the rows as written."""
    image_status = Counter(str(r["image_status"]) for r in scores)
    fetched = [r for r in scores if r["fetch_status"] is not None]
    caption: dict[str, Counter] = defaultdict(Counter)
    ocr: dict[str, Counter] = defaultdict(Counter)
    by_id = {}
    for r in scores:
        lang = r["caption_language"] or "none"
        if (
            r.get("cascade_status") == SKIPPED
            and r["caption_language"] is None
            and r["caption_problem"] is None
        ):
            lang = "not-detected"
        has_text = bool(r["ocr_text"])
        olang = (r["ocr_language"] or "none") if has_text else None
        by_id[r["row_id"]] = (lang, olang)
        caption[lang]["rows"] += 1
        if olang is not None:
            ocr[olang]["rows"] += 1
        for name in r["not_applicable"] or []:
            if name.startswith("ocr:"):
                if olang is not None:
                    ocr[olang][f"na:{name}"] += 1
            else:
                caption[lang][f"na:{name}"] += 1
    for f in flags:
        if f["row_id"] not in by_id:  # a quarantined row's flag: no scored row to count it under
            continue
        lang, olang = by_id[f["row_id"]]
        for side, key in ((caption, lang), (ocr, olang)):
            if key is None:
                continue
            side[key]["flagged"] += 1
            for reason in f["reasons"]:
                side[key][f"reason:{reason}"] += 1
    return {"image_status": dict(image_status), "fetched": len(fetched), "caption": caption, "ocr": ocr}


def _as_counters(counts: dict) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for key, c in counts.items():
        flat = Counter({"rows": c.rows, "flagged": c.rows_flagged})
        flat.update({f"reason:{k}": v for k, v in c.flags_by_reason.items()})
        flat.update({f"na:{k}": v for k, v in c.not_applicable.items()})
        out[key] = +flat  # drop zeros, as the reference never holds them
    return out


def _records(run: Path) -> list[ShardRecord]:
    return [ShardRecord.model_validate_json(p.read_text()) for p in sorted((run / "shards").glob("*.json"))]


def test_each_shard_record_tallies_its_written_rows_as_the_per_row_rule(sample_run: Path) -> None:
    records = _records(sample_run)
    assert records and all(r.status == "done" for r in records)
    languages_seen = set()
    for rec in records:
        scores = pq.read_table(sample_run / "scores" / f"{rec.shard_id}.parquet").to_pylist()
        flags = pq.read_table(sample_run / "parts" / "flags" / f"{rec.shard_id}.parquet").to_pylist()
        ref = _reference(scores, flags)
        t = rec.tallies
        assert t is not None
        assert t.image_status == ref["image_status"]
        assert sum(t.fetch_status.values()) == ref["fetched"]
        assert _as_counters(t.languages) == {k: +v for k, v in ref["caption"].items()}
        assert _as_counters(t.image_text_languages) == {k: +v for k, v in ref["ocr"].items()}
        languages_seen |= set(t.languages)
    assert len(languages_seen) > 1  # the sample's captions are in several languages


def test_summary_figures_are_the_shards_tallies_added_up(sample_run: Path) -> None:
    summary = Summary.model_validate_json((sample_run / "summary.json").read_text())
    records = _records(sample_run)
    status: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    for rec in records:
        assert rec.tallies is not None
        status.update(rec.tallies.image_status)
        rows.update({k: c.rows for k, c in rec.tallies.languages.items()})
        flagged.update({k: c.rows_flagged for k, c in rec.tallies.languages.items()})
    assert summary.image_status == dict(status)
    assert {k: c.rows for k, c in summary.languages.items()} == dict(rows)
    assert {k: c.rows_flagged for k, c in summary.languages.items()} == {k: flagged[k] for k in rows}
    assert sum(rows.values()) == summary.rows_scored
    assert summary.rows_text_only == status.get("absent", 0)
    # most rows first, ties by language
    order = [(-c.rows, k) for k, c in summary.languages.items()]
    assert order == sorted(order)


def test_the_manifest_leaves_the_tallies_to_the_shard_records(sample_run: Path) -> None:
    """They grow with the languages seen, times the shards: the manifest stays small at any scale."""
    manifest = json.loads((sample_run / "manifest.json").read_text())
    assert manifest["shards"] and all(s["tallies"] is None for s in manifest["shards"])
    assert all(r.tallies is not None for r in _records(sample_run))


def test_finalize_refuses_a_finished_shard_without_tallies(sample_run: Path, tmp_path: Path) -> None:
    import shutil

    from audit.config import AuditConfig
    from audit.finalize import finalize_run
    from audit.runfolder import RunFolder

    run_dir = tmp_path / "copy"
    shutil.copytree(sample_run, run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    cfg = AuditConfig.model_validate({**manifest["config"], "out": str(run_dir)})
    records = _records(run_dir)
    records[0] = records[0].model_copy(update={"tallies": None})
    with pytest.raises(AssertionError, match=records[0].shard_id):
        finalize_run(RunFolder(str(run_dir)), cfg, records, created_at="x", scheduler="x", timings={})


def test_resume_audits_again_a_shard_whose_record_has_no_tallies(
    make_config, sample_dir: Path, tmp_path: Path
) -> None:
    """A record written before shards carried their tallies proves nothing about the summary's
    figures: a resumed run audits that shard again instead of summing nothing for it."""
    from audit.pipelines.audit_run import run_audit

    out = tmp_path / "run"
    cfg = make_config(shards=[str(sample_dir / "parquet")], out=str(out))
    first = run_audit(cfg)
    paths = sorted((out / "shards").glob("*.json"))
    doc = json.loads(paths[0].read_text())
    del doc["tallies"]
    paths[0].write_text(json.dumps(doc))
    untouched = {p.name: p.read_text() for p in paths[1:]}
    second = run_audit(cfg)
    redone = json.loads(paths[0].read_text())
    assert redone["tallies"] is not None
    assert {p.name: p.read_text() for p in paths[1:]} == untouched  # the other shards were skipped
    assert second.languages == first.languages and second.image_status == first.image_status
