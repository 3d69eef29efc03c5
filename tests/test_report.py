"""audit.report on real audits of the sample corpus: report.html, exports and the removal list."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from markupsafe import escape
from typer.testing import CliRunner

from audit.cli import app as cli_app
from audit.config import packaged_file
from audit.errors import AuditError
from audit.report import write_report
from audit.review import ImageUnavailableError, load_image, load_run, record_decision, render_blocked
from audit.schemas import CLIP_RANDOM_WARNING, LAION_METADATA_SCHEMA

REPORT_FILES = ("report.html", "flags.csv", "flags.jsonl", "removal_list.txt", "authority_report.csv",
                "flags.parquet", "removal_list.parquet", "removed_urls.parquet", "counts.json",
                "figures.json")  # fmt: skip
# the plots: SVG drawings of the figures, each a few tens of kB whatever the corpus size
CHART = re.compile(rb'<svg xmlns="http://www.w3.org/2000/svg".*?</svg>', re.S)
HTML_KEY = "4242"  # LAION keys are SAMPLE_IDs
TRICKY_CAPTION = '<script>alert("x")</script> stupid fucking idiot & co'


@pytest.fixture
def run_dir(sample_run: Path, tmp_path: Path) -> Path:
    """A private copy of the shared run (ViT-B-32 with random weights, default rules)."""
    return Path(shutil.copytree(sample_run, tmp_path / "sample"))


@pytest.fixture(scope="module")
def low_rule_run(
    sample_dir: Path, make_config: Callable[..., object], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A real audit with one extra low-severity rule, and an extra LAION metadata shard whose only
    caption is offensive and full of HTML (tiny local CLIP checkpoint, so CLIP is meaningful here)."""
    from audit.pipelines.audit_run import run_audit

    root = tmp_path_factory.mktemp("low_rule")
    rules = yaml.safe_load(packaged_file("rules", "default.yaml").read_text())
    rules["rules"].append(
        {
            "id": "borderline-caption",
            "reason": "borderline-caption",
            "severity": "low",
            "all": [{"score": "text_offensive_prob", "op": ">=", "value": 0.3}],
        }
    )
    rules_path = root / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(rules))
    laion = root / "laion" / "part-00000.parquet"
    laion.parent.mkdir()
    cols = {f.name: [None] for f in LAION_METADATA_SCHEMA}
    cols.update({"URL": ["http://x.invalid/a.jpg?b=1&c=<2>"], "TEXT": [TRICKY_CAPTION], "SAMPLE_ID": [4242]})
    pq.write_table(pa.table(cols, schema=LAION_METADATA_SCHEMA), laion)
    out = root / "run"
    shards = [str(sample_dir / "parquet"), str(sample_dir / "webdataset"), str(laion)]
    run_audit(make_config(shards=shards, out=str(out), rules=str(rules_path)))
    return out


@pytest.fixture
def low_run_dir(low_rule_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(low_rule_run, tmp_path / "low"))


def _removal(run_dir: Path) -> dict[str, list[str]]:
    """row_id -> [key, url, severity, reasons] of each removal_list.txt line."""
    lines = (run_dir / "report" / "removal_list.txt").read_text().splitlines()
    rows = [line.split("\t") for line in lines]
    assert all(len(r) == 5 for r in rows), rows
    assert len({r[0] for r in rows}) == len(rows)  # one line per row id
    return {r[0]: r[1:] for r in rows}


def _rid(run_dir: Path, key: str) -> str:
    """The row id of a flagged row by its key (unique in these runs)."""
    [rid] = [f["row_id"] for f in load_run(str(run_dir)).flags.to_pylist() if f["key"] == key]
    return rid


def _mentions(page: str, row_id: str) -> bool:
    """``row_id`` appears on the page (and not only as the start of a longer row id)."""
    return re.search(re.escape(row_id) + r"(?!\d)", page) is not None


def _paragraph(page: str, element_id: str) -> str:
    found = re.search(rf'<p id="{element_id}">(.*?)</p>', page, re.S)
    assert found is not None, element_id
    return " ".join(found.group(1).split())


def test_write_report_writes_every_file(run_dir: Path) -> None:
    paths = write_report(str(run_dir))
    assert [Path(p).name for p in paths] == list(REPORT_FILES)
    for p in paths:
        assert Path(p).is_file() and Path(p).parent == run_dir / "report"
    assert not [p for p in (run_dir / "report").iterdir() if ".tmp-" in p.name]


def test_report_html_has_the_clip_banner_invariant_and_every_renderable_flagged_row(run_dir: Path) -> None:
    write_report(str(run_dir))
    page = (run_dir / "report" / "report.html").read_text()
    run = load_run(str(run_dir))
    assert not run.summary.clip_meaningful
    assert 'id="clip-warning"' in page and str(escape(CLIP_RANDOM_WARNING)) in page
    s = run.summary
    assert f"{s.rows_in} = {s.rows_scored} + {s.rows_quarantined}" in page
    blocked = [f for f in run.flags.to_pylist() if render_blocked(f)]
    assert blocked  # the sample's known-bad rows
    for f in run.flags.to_pylist():
        if render_blocked(f):  # counted only: neither row id nor key reaches the page
            assert not _mentions(page, f["row_id"]) and f["key"] not in page, f["key"]
        else:
            assert f"<code>{f['row_id']}</code>" in page and f"<code>{f['key']}</code>" in page
    assert _paragraph(page, "never-rendered").startswith(f"{len(blocked)} flagged rows are never shown")
    assert f'<span id="rows-image-only">{s.rows_image_only}</span>' in page and s.rows_image_only > 0
    assert f'<span id="rows-text-only">{s.rows_text_only}</span>' in page
    repeated = _paragraph(page, "repeated-keys")
    assert f"{s.keys_repeated} rows repeat" in repeated
    assert f"{s.keys_in_several_shards} keys appear in more than one shard" in repeated
    for reason in (*s.flags_by_reason, *s.quarantine_by_reason):
        assert reason in page
    clip = run.manifest.models["clip"]
    assert clip.weights == "random" and str(escape(clip.source)) in page  # how jinja escapes it
    assert run.manifest.rules_hash in page


def test_report_html_without_random_clip_has_no_banner_and_escapes_captions(low_run_dir: Path) -> None:
    write_report(str(low_run_dir))
    page = (low_run_dir / "report" / "report.html").read_text()
    assert load_run(str(low_run_dir)).summary.clip_meaningful
    assert 'id="clip-warning"' not in page
    assert f"<code>{HTML_KEY}</code>" in page
    assert "<script>" not in page
    assert str(escape(TRICKY_CAPTION)) in page


def test_report_holds_no_image_bytes(run_dir: Path) -> None:
    paths = [Path(p) for p in write_report(str(run_dir))]
    n_flags = load_run(str(run_dir)).flags.num_rows
    for p in paths:
        data = p.read_bytes()
        if p.suffix == ".parquet":  # no column could hold image bytes
            types = [f.type for f in pq.read_schema(p)]
            assert not [t for t in types if pa.types.is_binary(t) or pa.types.is_large_binary(t)], p.name
            continue
        assert b"data:image" not in data and b"<img" not in data and b"<image" not in data, p.name
        assert b"\xff\xd8\xff" not in data and b"\x89PNG" not in data, p.name
        charts = CHART.findall(data)
        assert (p.name == "report.html") == bool(charts)
        assert all(len(c) < 120_000 for c in charts)
        # fixed page furniture plus at most ~1.5 kB of text per flagged row: never pictures
        data = CHART.sub(b"", data)
        assert len(data) < 40_000 + 1500 * n_flags, (p.name, len(data))


def test_exports_hold_every_flag_with_its_scores(run_dir: Path) -> None:
    write_report(str(run_dir))
    run = load_run(str(run_dir))
    flags = run.flags.to_pylist()
    with open(run_dir / "report" / "flags.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    lines = (run_dir / "report" / "flags.jsonl").read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    assert [r["row_id"] for r in rows] == [d["row_id"] for d in docs] == [f["row_id"] for f in flags]
    assert [r["key"] for r in rows] == [d["key"] for d in docs] == [f["key"] for f in flags]
    for flag, row, doc in zip(flags, rows, docs, strict=True):
        assert doc["scores"] == dict(flag["scores"]) == json.loads(row["scores"])
        assert doc["reasons"] == flag["reasons"] == row["reasons"].split(";")
        assert doc["severity"] == row["severity"] == flag["severity"]


def test_removal_list_has_flags_of_medium_severity_and_above(low_run_dir: Path) -> None:
    write_report(str(low_run_dir))
    flags = load_run(str(low_run_dir)).flags.to_pylist()
    severities = {f["row_id"]: f["severity"] for f in flags}
    assert "low" in severities.values()  # the extra rule fired alone somewhere
    removal = _removal(low_run_dir)
    assert set(removal) == {r for r, s in severities.items() if s in ("medium", "high", "critical")}
    for f in flags:
        if f["row_id"] in removal:
            assert removal[f["row_id"]] == [f["key"], f["url"], f["severity"], ",".join(f["reasons"])]
    html_row = removal[_rid(low_run_dir, HTML_KEY)]
    assert html_row[:2] == [HTML_KEY, "http://x.invalid/a.jpg?b=1&c=<2>"]  # a text file: raw, not escaped


def test_removal_list_follows_the_latest_reviewer_decision(low_run_dir: Path) -> None:
    run = load_run(str(low_run_dir))
    low = next(f["row_id"] for f in run.flags.to_pylist() if f["severity"] == "low")
    rid = {k: _rid(low_run_dir, k) for k in ("offensive-0", "offensive-1", "offensive-2", "hateful-0")}
    record_decision(run, rid["offensive-1"], "false_positive", "ann")  # medium, dropped
    record_decision(run, rid["offensive-2"], "needs_escalation", "ann")  # medium, stays
    record_decision(run, rid["hateful-0"], "false_positive", "ann")
    record_decision(run, rid["hateful-0"], "confirm_harmful", "bob")  # latest wins: stays
    record_decision(run, low, "confirm_harmful", "ann")  # low, added
    write_report(str(low_run_dir))
    removal = _removal(low_run_dir)
    assert rid["offensive-1"] not in removal
    assert {rid["offensive-0"], rid["offensive-2"], rid["hateful-0"], low} <= set(removal)
    assert removal[low][2] == "low"
    page = (low_run_dir / "report" / "report.html").read_text()
    assert "confirm_harmful" in page and "false_positive" in page


def test_rows_of_imageless_formats_have_no_thumbnail(low_run_dir: Path) -> None:
    run = load_run(str(low_run_dir))
    rid = _rid(low_run_dir, HTML_KEY)
    assert next(f for f in run.flags.to_pylist() if f["row_id"] == rid)["known_bad_match"] is None
    for blur in (True, False):
        with pytest.raises(ImageUnavailableError, match=re.escape(rid)):
            load_image(run, rid, blur=blur)


def test_rows_of_imageless_formats_say_they_carry_no_images(low_run_dir: Path) -> None:
    with pytest.raises(ImageUnavailableError, match="carries no images"):
        load_image(load_run(str(low_run_dir)), _rid(low_run_dir, HTML_KEY))


def test_write_report_without_summary_fails_and_writes_nothing(run_dir: Path) -> None:
    (run_dir / "summary.json").unlink()
    with pytest.raises(AuditError, match=r"summary\.json"):
        write_report(str(run_dir))
    assert not (run_dir / "report").exists()


def test_cli_report_prints_paths_and_turns_errors_into_one_line(run_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["report", "--run", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert [Path(p).name for p in result.stdout.split()] == list(REPORT_FILES)
    missing = CliRunner().invoke(cli_app, ["report", "--run", str(tmp_path / "missing")])
    assert missing.exit_code == 2
    assert "summary.json" in missing.output and "Traceback" not in missing.output


def test_authority_report_lists_never_rendered_rows_with_their_hashes(
    sample_run: Path, tmp_path: Path
) -> None:
    from audit.report import AUTHORITY_COLUMNS
    from audit.sample import planted_cases

    run_dir = tmp_path / "run"
    shutil.copytree(sample_run, run_dir)
    write_report(str(run_dir))
    rows = list(csv.DictReader((run_dir / "report" / "authority_report.csv").open()))
    assert list(rows[0]) == list(AUTHORITY_COLUMNS) and AUTHORITY_COLUMNS[0] == "row_id"
    # with a caption, image-only (no caption) and quarantined (no caption, undecodable bytes)
    assert sorted(r["key"] for r in rows) == sorted(planted_cases()["known_bad"])
    flags = {f["row_id"]: f for f in load_run(str(run_dir)).flags.to_pylist()}
    for r in rows:
        assert flags[r["row_id"]]["key"] == r["key"] and r["severity"] == "critical"
        assert len(r["sha256"]) == 64 and r["known_bad_list"].startswith("known_bad.csv:")
    # the report counts them but shows nothing of them
    html = (run_dir / "report" / "report.html").read_text()
    assert "data:image" not in html and "<img" not in html
    for r in rows:
        assert not _mentions(html, r["row_id"]) and r["key"] not in html


def test_csv_cells_that_look_like_formulas_are_defused() -> None:
    from audit.report import _cell

    assert _cell('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert _cell("a normal caption") == "a normal caption" and _cell(3) == 3


def test_report_shows_the_energy_estimate_and_its_method(sample_run: Path, tmp_path: Path) -> None:
    import json
    import shutil

    run_dir = Path(shutil.copytree(sample_run, tmp_path / "run"))
    energy = json.loads((run_dir / "manifest.json").read_text())["energy"]
    assert energy["energy_kwh"] > 0 and energy["co2e_grams"] > 0
    write_report(str(run_dir))
    html = (run_dir / "report" / "report.html").read_text()
    assert 'id="energy"' in html and energy["method"].split(" ")[0] in html


def test_known_bad_rows_without_a_caption_are_flagged_and_reported(sample_run: Path) -> None:
    """The sample's known-bad-no-caption is audited image-only and known-bad-undecodable (no caption,
    bytes that do not decode) is quarantined: both are flagged critical by their SHA-256."""
    flags = {f["key"]: f for f in pq.read_table(sample_run / "flags.parquet").to_pylist()}
    quarantine = {q["key"]: q for q in pq.read_table(sample_run / "quarantine.parquet").to_pylist()}
    scores = {
        r["key"]: r
        for p in sorted((sample_run / "scores").glob("*.parquet"))
        for r in pq.read_table(p, columns=["key", "row_id", "caption_problem", "known_bad_match"]).to_pylist()
    }
    image_only = scores["known-bad-no-caption"]
    assert image_only["caption_problem"] == "caption_missing" and image_only["known_bad_match"] is True
    assert "known-bad-no-caption" not in quarantine
    assert quarantine["known-bad-undecodable"]["known_bad_match"] is True
    assert quarantine["known-bad-undecodable"]["known_bad_list"] == "known_bad.csv:sha256:sample-undecodable"
    assert "known-bad-undecodable" not in scores
    for key, rid in (
        ("known-bad-no-caption", image_only["row_id"]),
        ("known-bad-undecodable", quarantine["known-bad-undecodable"]["row_id"]),
    ):
        assert flags[key]["row_id"] == rid
        assert flags[key]["severity"] == "critical" and "known-bad-hash" in flags[key]["reasons"]
        assert flags[key]["render_blocked"]
