"""audit.review.details against the audited sample run (real scores, manifest, FAISS index, duplicates)
and a synthetic run (clusters with never-render rows)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from audit.benchmarks.synthetic_run import SyntheticRun, synth_run
from audit.pipelines.neighbours_run import expand_seeds
from audit.render_policy import never_render
from audit.review import details as d
from audit.review import flag_row, load_run, record_decision
from audit.review import queue as q
from audit.review.queue import QueueFilter
from audit.review.safety import masker_for
from audit.runfolder import RunFolder
from audit.schemas import SCORE_COLUMNS


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticRun:
    return synth_run(tmp_path_factory.mktemp("synthetic"), n_flags=3_000, n_shards=2, seed=11)


def _rid(run_dir: Path, key: str) -> str:
    for path in sorted((run_dir / "scores").glob("*.parquet")):
        t = pq.read_table(path, columns=["row_id", "key"])
        at = pc.index(t.column("key"), key).as_py()
        if at >= 0:
            return t.column("row_id")[at].as_py()
    raise AssertionError(key)


def test_every_score_names_its_scorer_and_version(sample_run: Path) -> None:
    run = load_run(str(sample_run))
    flag = flag_row(run, _rid(sample_run, "hateful-0"))
    lines = {line["score"]: line for line in d.score_details(run, flag, masker_for(run))}
    scores = pq.read_table(sample_run / "scores" / f"{flag['shard_id']}.parquet").to_pylist()
    row = next(r for r in scores if r["row_id"] == flag["row_id"])
    written = {name for name in SCORE_COLUMNS if row.get(name) is not None}
    used = {name.rpartition(":")[2] for name, _ in flag["thresholds"]}
    assert written | {name for name, _ in flag["scores"]} | used == set(lines)
    for score in used - written - {name for name, _ in flag["scores"]}:  # e.g. detoxify, not run here
        assert lines[score]["value"] == "not scored in this run" and lines[score]["threshold"]
    models = run.manifest.models
    for score, model in (
        ("text_offensive_prob", "profanity_check"),
        ("text_hate_prob", "hatesonar"),
        ("clip_similarity", "clip"),
        ("lexicon_slur_hits", "lexicon"),
        ("image_nsfw_prob", "opennsfw"),
    ):
        record = models[model]
        assert lines[score]["scorer"] == record.name, score
        assert lines[score]["weights"] == record.weights
        assert lines[score]["version"] == (record.version or f"sha256 {record.sha256[:12]}")
    assert lines["clip_similarity"]["weights"] == "random"  # the sample's CLIP: not meaningful
    assert lines["text_hate_prob"]["value"] == f"{dict(flag['scores'])['text_hate_prob']:.4g}"
    assert used and all(lines[s]["threshold"] for s in used)
    # the matched slurs are masked in the score list as in the caption, until revealed
    assert "white trash" in row["caption"]
    masked = lines["lexicon_terms"]["value"]
    assert "slur:w**** *****" in masked and "white trash" not in masked
    revealed = {x["score"]: x for x in d.score_details(run, flag, masker_for(run), reveal=True)}
    assert "slur:white trash (class)" in revealed["lexicon_terms"]["value"]


def test_duplicate_groups_list_the_rows_group_mates(sample_run: Path) -> None:
    run = load_run(str(sample_run))
    dups = pq.read_table(sample_run / "duplicates.parquet").to_pylist()
    rid = _rid(sample_run, "photo-astronaut")
    mine = {(r["kind"], r["group"]) for r in dups if r["row_id"] == rid}
    assert ("exact", 0) in mine or any(k == "exact" for k, _ in mine)
    got = d.duplicate_groups(run, rid).to_pylist()
    assert sorted((g["kind"], g["group"], g["row_id"]) for g in got) == sorted(
        (r["kind"], r["group"], r["row_id"]) for r in dups if (r["kind"], r["group"]) in mine
    )
    assert _rid(sample_run, "exactdup-astronaut") in {g["row_id"] for g in got}
    assert [g["representative"] for g in got if g["row_id"] == rid]
    assert d.duplicate_groups(run, "nope:0").num_rows == 0


def test_cluster_mates_list_never_render_rows_by_row_id_only(synthetic: SyntheticRun) -> None:
    run = load_run(str(synthetic.path))
    flags = pq.read_table(synthetic.path / "flags.parquet").to_pylist()
    nb = pa.concat_tables(
        [pq.read_table(p) for p in sorted((synthetic.path / "neighbours").glob("*.parquet"))]
    )
    cluster_of = dict(zip(nb.column("row_id").to_pylist(), nb.column("cluster").to_pylist(), strict=True))
    bad = next(r for r in flags if never_render(r))
    cluster = cluster_of[bad["row_id"]]
    some = next(r for r in flags if cluster_of[r["row_id"]] == cluster and not never_render(r))
    assert d.cluster_of(run, some["row_id"], some["shard_id"]) == cluster
    mates = d.cluster_mates(run, cluster, some["row_id"], limit=10_000).to_pylist()
    want = {r["row_id"] for r in flags if cluster_of[r["row_id"]] == cluster} - {some["row_id"]}
    assert {m["row_id"] for m in mates} == want
    listed = next(m for m in mates if m["row_id"] == bad["row_id"])
    assert listed["key"] == "" and listed["never_render"]
    assert mates[0]["severity"] == "critical"  # most severe first
    ranking = d.cluster_ranking(run).to_pylist()
    assert [r["flag_rate"] for r in ranking] == sorted((r["flag_rate"] for r in ranking), reverse=True)
    row = next(r for r in ranking if r["cluster"] == cluster)
    assert (
        row["in_queue"]
        == q.count(run, QueueFilter(clusters=(cluster,)))
        == len(want) + 1 - sum(never_render(r) for r in flags if cluster_of[r["row_id"]] == cluster)
    )


def test_nearest_neighbours_are_the_expansion_of_one_seed_and_write_nothing(sample_run: Path) -> None:
    run = load_run(str(sample_run))
    rid = _rid(sample_run, "photo-astronaut")
    before = sorted(p.name for p in sample_run.iterdir())
    found = d.nearest_neighbours(run, rid, k=5)
    assert found is not None and found.num_rows == 5
    table, missing = expand_seeds(RunFolder(str(sample_run)), [rid], min_similarity=None, k=5, write=False)
    assert missing == [] and found.column("row_id").to_pylist() == table.column("row_id").to_pylist()
    assert _rid(sample_run, "exactdup-astronaut") in found.column("row_id").to_pylist()
    assert sorted(p.name for p in sample_run.iterdir()) == before  # no near_flagged.parquet written
    flagged = {r["row_id"]: r for r in run.flags.to_pylist()}
    for r in found.to_pylist():
        assert r["flagged"] == (r["row_id"] in flagged)
        if r["flagged"] and never_render(flagged[r["row_id"]]):
            assert r["key"] == "" and r["never_render"]


def test_expansion_from_seeds_joins_flags_and_decisions(sample_run: Path, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(sample_run, tmp_path / "run"))
    run = load_run(str(run_dir))
    seeds = [_rid(run_dir, "photo-chelsea"), _rid(run_dir, "offensive-0")]
    found, missing = d.expand(run, seeds, k=8)
    assert missing == [] and found.num_rows > 0 and not set(seeds) & set(found.column("row_id").to_pylist())
    assert set(found.column("seed_row_id").to_pylist()) <= set(seeds)
    # every row with an image embedding is among the 100 nearest of a seed in a corpus of 77 rows
    found, _ = d.expand(run, seeds[1:], k=100)
    flagged = {r["row_id"]: r for r in run.flags.to_pylist()}
    rows = found.to_pylist()
    assert [r["flagged"] for r in rows] == [r["row_id"] in flagged for r in rows]
    target = next(r for r in rows if r["flagged"] and not r["never_render"])
    record_decision(run, target["row_id"], "needs_escalation", "ann")
    again, _ = d.expand(run, seeds[1:], k=100)
    assert {r["row_id"]: r["latest_decision"] for r in again.to_pylist()}[
        target["row_id"]
    ] == "needs_escalation"
    assert {r["row_id"] for r in again.to_pylist() if r["never_render"]} == {
        r for r in {x["row_id"] for x in rows} if r in flagged and never_render(flagged[r])
    }


def test_a_run_folder_with_glob_characters_reads_only_its_own_files(
    synthetic: SyntheticRun, tmp_path: Path
) -> None:
    odd = Path(shutil.copytree(synthetic.path, tmp_path / "run[1]*{a,b}"))
    other = Path(shutil.copytree(synthetic.path, tmp_path / "run1-other"))  # what the pattern would match
    flags = pq.read_table(other / "flags.parquet")
    pq.write_table(flags.slice(0, 10), other / "flags.parquet")
    run = load_run(str(odd))
    assert q.count(run, QueueFilter()) == synthetic.flags - synthetic.never_render
    assert d.cluster_ranking(run).num_rows > 0
    row = flag_row(run, q.row_at(run, QueueFilter(), q.QueueSort(), 0))
    assert d.scores_row(run, row["row_id"], row["shard_id"])["row_id"] == row["row_id"]
