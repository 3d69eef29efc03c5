"""The report's figures (figures.json) against counts made here from the run's own Parquet, on a
real audit with meaningful (tiny, local) CLIP weights and a LAION metadata shard; and the sections
that must say why they are absent, on the sample run (random CLIP weights, no LAION metadata)."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from audit.cli import app as cli_app
from audit.lexicon import Lexicon
from audit.report import write_report
from audit.report_charts import check_svg, draw
from audit.report_figures import SWEEP_THRESHOLDS
from audit.report_mask import Masker
from audit.review import load_run, record_decision, render_blocked

SECTIONS = ("run", "flags", "score_distributions", "similarity_sweep", "nsfw_crosstab", "lexicon_terms",
            "shard_rates", "cluster_hotspots", "duplicates", "decisions", "removal", "provenance",
            "energy")  # fmt: skip
# terms of the sample's captions that the lexicon matches ("nude beach photo leaked", ...)
MASKED_WORDS = ("nude", "massacre", "redneck", "hillbilly")


@pytest.fixture(scope="module")
def figures_run(sample_dir: Path, make_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from audit.pipelines.audit_run import run_audit

    out = tmp_path_factory.mktemp("figures") / "run"
    shards = [str(sample_dir / "parquet"), str(sample_dir / "webdataset"), str(sample_dir / "laion_metadata")]
    run_audit(
        make_config(
            shards=shards, out=str(out), **{"images.known_bad_lists": [str(sample_dir / "known_bad.csv")]}
        )
    )
    return out


@pytest.fixture
def run_dir(figures_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(figures_run, tmp_path / "run"))


def _figures(run: Path) -> dict:
    return json.loads((run / "report" / "figures.json").read_text())


def _scores(run: Path, columns: list[str]) -> pa.Table:
    return pa.concat_tables(
        pq.read_table(p, columns=columns) for p in sorted((run / "scores").glob("*.parquet"))
    )


def test_figures_json_has_every_section_and_the_page_every_chart(run_dir: Path) -> None:
    write_report(str(run_dir))
    figures = _figures(run_dir)
    page = (run_dir / "report" / "report.html").read_text()
    assert set(SECTIONS) <= set(figures)
    for name in ("similarity_sweep", "nsfw_crosstab", "shard_rates", "cluster_hotspots", "duplicates"):
        assert figures[name]["shown"], (name, figures[name].get("absent_reason"))
    charts = [c for ids in figures["charts"].values() for c in ids]
    assert len(charts) >= 10
    for chart in charts:
        found = re.search(
            rf'<figure class="chart" id="{re.escape(chart)}"><figcaption>[^<]*</figcaption>\s*<svg', page
        )
        assert found, chart
    assert "<script" not in page and 'http-equiv="Content-Security-Policy"' in page


def test_similarity_sweep_counts_the_flagged_pairs_a_filter_keeps(run_dir: Path) -> None:
    write_report(str(run_dir))
    sweep = _figures(run_dir)["similarity_sweep"]
    assert sweep["thresholds"] == list(SWEEP_THRESHOLDS) == [round(0.25 + 0.01 * i, 2) for i in range(11)]
    flags = pq.read_table(run_dir / "flags.parquet", columns=["row_id", "reasons"]).to_pylist()
    pairs = {f["row_id"] for f in flags if set(f["reasons"]) - {"image-text-mismatch"}}
    scores = _scores(run_dir, ["row_id", "clip_similarity", "source_similarity"]).to_pylist()
    series = {s["column"]: s for s in sweep["series"]}
    assert set(series) == {"clip_similarity", "source_similarity"}
    for column, doc in series.items():
        sims = [r[column] for r in scores if r["row_id"] in pairs and r[column] is not None]
        assert doc["pairs"] == len(sims) > 0
        for point in doc["points"]:
            assert point["kept"] == sum(s >= point["threshold"] for s in sims), (column, point)


def test_nsfw_crosstab_counts_caption_harms_by_the_datasets_own_tag(run_dir: Path) -> None:
    write_report(str(run_dir))
    cross = _figures(run_dir)["nsfw_crosstab"]
    t = _scores(run_dir, ["source_nsfw", "caption_problem", "text_hate_prob", "lexicon_slur_hits",
                          "lexicon_sexual_hits", "lexicon_violence_hits"]).to_pylist()  # fmt: skip
    usable = [r for r in t if r["caption_problem"] is None]
    rows = {r["value"]: r for r in cross["rows"] if r["source"] == "NSFW tag"}
    assert {"NSFW", "UNSURE", "UNLIKELY", "(none)"} <= set(rows)
    for tag, doc in rows.items():
        group = [r for r in usable if (r["source_nsfw"] or "(none)") == tag]
        assert doc["rows"] == len(group)
        assert doc["hate"] == sum((r["text_hate_prob"] or 0) >= 0.5 for r in group)
        lexicon = ("lexicon_slur_hits", "lexicon_sexual_hits", "lexicon_violence_hits")
        hits = [sum(r[c] or 0 for c in lexicon) for r in group]
        assert doc["lexicon"] == sum(h >= 1 for h in hits)
    assert "punsafe" in {r["source"] for r in cross["rows"]}


def test_per_shard_rates_are_each_shards_flags_over_its_rows(run_dir: Path) -> None:
    write_report(str(run_dir))
    rates = _figures(run_dir)["shard_rates"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    flagged = Counter(
        pq.read_table(run_dir / "flags.parquet", columns=["shard_id"]).column("shard_id").to_pylist()
    )
    by_shard = {d["shard"]: d for d in rates["shards"]}
    assert set(by_shard) == {s["shard_id"] for s in manifest["shards"]}
    for s in manifest["shards"]:
        assert by_shard[s["shard_id"]]["rate"] == pytest.approx(flagged[s["shard_id"]] / s["rows_in"])
    anyr = next(d for d in rates["distribution"] if d["reason"] == "any reason")
    values = sorted(d["rate"] for d in rates["shards"])
    assert anyr["min"] == pytest.approx(values[0]) and anyr["max"] == pytest.approx(values[-1])


def test_duplicates_and_cluster_hot_spots_follow_their_files(run_dir: Path) -> None:
    write_report(str(run_dir))
    figures = _figures(run_dir)
    dups = pq.read_table(run_dir / "duplicates.parquet").to_pylist()
    for kind in figures["duplicates"]["by_kind"]:
        members = [d for d in dups if d["kind"] == kind["kind"]]
        assert kind["groups"] == len({d["group"] for d in members}) and kind["rows"] == len(members)
        assert kind["redundant_rows"] == kind["rows"] - kind["groups"]
    clusters = {c["cluster"]: c for c in pq.read_table(run_dir / "clusters.parquet").to_pylist()}
    hot = figures["cluster_hotspots"]["hot_spots"]
    assert [h["flag_rate"] for h in hot] == sorted((h["flag_rate"] for h in hot), reverse=True)
    for h in hot:
        assert (h["rows"], h["flagged"]) == (
            clusters[h["cluster"]]["n_rows"],
            clusters[h["cluster"]]["n_flagged"],
        )


def test_pending_escalations_are_listed_and_never_rendered_ones_only_counted(run_dir: Path) -> None:
    run = load_run(str(run_dir))
    flags = run.flags.to_pylist()
    shown = next(f for f in flags if not render_blocked(f) and f["key"].startswith("offensive"))
    hidden = next(f for f in flags if render_blocked(f))
    record_decision(run, shown["row_id"], "needs_escalation", "ann", note="a redneck joke, ask legal")
    record_decision(run, hidden["row_id"], "needs_escalation", "bob")
    write_report(str(run_dir))
    decisions = _figures(run_dir)["decisions"]
    assert decisions["pending_escalations"] == 2 and decisions["pending_escalations_never_rendered"] == 1
    assert [e["row_id"] for e in decisions["pending_escalations_listed"]] == [shown["row_id"]]
    assert decisions["pending_escalations_listed"][0]["note"] == "a r****** joke, ask legal"
    page = (run_dir / "report" / "report.html").read_text()
    table = re.search(r'<table id="pending-escalations">(.*?)</table>', page, re.S).group(1)
    assert f"<code>{shown['row_id']}</code>" in table and hidden["row_id"] not in page
    assert decisions["by_decision"]["needs_escalation"] == 2


def test_lexicon_terms_are_masked_in_the_page_and_in_figures_json(run_dir: Path) -> None:
    write_report(str(run_dir))
    page = (run_dir / "report" / "report.html").read_text()
    doc = (run_dir / "report" / "figures.json").read_text()
    for word in MASKED_WORDS:
        assert not re.search(rf"\b{word}\b", page, re.I), word
        assert not re.search(rf"\b{word}\b", doc, re.I), word
        assert f"{word[0]}{'*' * (len(word) - 1)}" in page
    terms = _figures(run_dir)["lexicon_terms"]["terms"]
    assert terms and all(set(t["term"][1:]) <= {"*", " "} for t in terms)
    # the exports keep the data as it is: curators act on it
    assert "nude beach photo leaked" in (run_dir / "report" / "flags.csv").read_text()


def test_sections_without_data_say_why(sample_run: Path, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(sample_run, tmp_path / "run"))
    write_report(str(run_dir))
    figures = _figures(run_dir)
    sweep = figures["similarity_sweep"]
    assert not sweep["shown"] and "NOT meaningful" in sweep["absent_reason"]
    assert "no precomputed similarity" in sweep["absent_reason"]
    assert not figures["nsfw_crosstab"]["shown"] and "NSFW tag" in figures["nsfw_crosstab"]["absent_reason"]
    page = (run_dir / "report" / "report.html").read_text()
    assert 'id="sweep-absent"' in page and 'id="crosstab-absent"' in page
    assert "similarity-sweep" not in page.replace('id="sec-sweep"', "")


def test_removal_policy_comes_from_the_config_and_overrides(run_dir: Path, tmp_path: Path) -> None:
    def removal(**overrides: object) -> dict[str, str]:
        write_report(str(run_dir), overrides=overrides)
        rows = pq.read_table(run_dir / "report" / "removal_list.parquet", columns=["row_id", "basis"])
        return dict(zip(rows.column("row_id").to_pylist(), rows.column("basis").to_pylist(), strict=True))

    flags = pq.read_table(run_dir / "flags.parquet").to_pylist()
    high = removal(**{"removal.min_severity": "high"})
    assert set(high) == {f["row_id"] for f in flags if f["severity_rank"] >= 3 or render_blocked(f)}
    with_pii = removal(**{"removal.min_severity": "high", "removal.rules": ["pii-in-caption"]})
    pii = {f["row_id"] for f in flags if "pii-in-caption" in f["rules"]}
    assert pii and all(with_pii[r] in ("rule", "severity", "never-render") for r in pii)
    assert set(with_pii) == set(high) | pii
    config = tmp_path / "policy.yaml"
    config.write_text("removal:\n  min_severity: null\n  confirmed: true\n")
    write_report(str(run_dir), config=str(config))
    only_never = pq.read_table(run_dir / "report" / "removal_list.parquet").column("basis").to_pylist()
    assert set(only_never) == {"never-render"}
    for bad, why in ((["--set", "removal.rules=[no-such-rule]"], "unknown rule id 'no-such-rule'"),
                     (["--set", "removal.colour=1"], "unknown config key 'removal.colour'"),
                     (["--set", "clip.batch_size=2"], "removal.* keys only")):  # fmt: skip
        result = CliRunner().invoke(cli_app, ["report", "--run", str(run_dir), *bad])
        assert result.exit_code == 2, result.output
        assert why in result.output and "Traceback" not in result.output


def test_chart_svg_is_refused_unless_it_is_plain_drawing() -> None:
    encoding = {"y": {"field": "a", "type": "nominal"}, "x": {"field": "n", "type": "quantitative"}}
    good = draw("c", "t", {"data": {"values": [{"a": "x<y>&", "n": 1}]}, "mark": "bar", "encoding": encoding})
    assert good.svg is not None and "x&lt;y&gt;&amp;" in good.svg
    svg = '<svg xmlns="http://www.w3.org/2000/svg">{}</svg>'
    refused = (
        "<script>alert(1)</script>",
        '<rect onload="alert(1)"/>',
        '<a href="http://x.invalid/"/>',
        '<rect fill="url(http://x.invalid/f)"/>',
        '<image href="data:image/png;base64,AA"/>',
        '<rect style="fill: url(//x.invalid)"/>',
        "<foreignObject><p>x</p></foreignObject>",
    )
    for bad in refused:
        with pytest.raises(ValueError):
            check_svg(svg.format(bad))
    assert check_svg(svg.format('<rect fill="url(#g)" width="1"/>'))


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("nude beach photo leaked", "n*** beach photo leaked"),
        ("NUDE", "N***"),
        ("p0rn and n\u00fcde", "p*** and n***"),
        ("n\u200bude", "n****"),
        (
            "Scunthorpe cocktails and assassination-free grapes",
            "Scunthorpe cocktails and assassination-free grapes",
        ),
        ("http://x.invalid/massacre.jpg", "http://x.invalid/m*******.jpg"),
        ("white trash redneck", "w**** ***** r******"),
    ],
)
def test_masker_masks_lexicon_matches_in_the_original_text(text: str, masked: str) -> None:
    assert Masker(Lexicon()).mask(text) == masked


def test_report_reads_flags_in_batches_and_aggregates_in_duckdb(run_dir: Path) -> None:
    """figures.json and counts.json agree with the summary (the numbers come from DuckDB over the
    Parquet, the summary from the audit)."""
    write_report(str(run_dir))
    s = json.loads((run_dir / "summary.json").read_text())
    counts = json.loads((run_dir / "report" / "counts.json").read_text())
    assert counts["flags_by_reason"] == s["flags_by_reason"]
    by = Counter()
    for row in counts["flags_by_reason_and_severity"]:
        by[row["reason"]] += row["flags"]
    assert dict(by) == s["flags_by_reason"]
    removal = pq.read_table(run_dir / "report" / "removal_list.parquet")
    assert counts["removal_rows"] == removal.num_rows == sum(counts["removal_by_basis"].values())
    exported = pq.read_table(run_dir / "report" / "flags.parquet")
    assert exported.num_rows == s["rows_flagged"] and {"decision", "removal", "removal_basis"} <= set(
        exported.column_names
    )
    assert pc.sum(exported.column("removal")).as_py() == removal.num_rows
