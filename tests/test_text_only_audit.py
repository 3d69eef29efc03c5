"""A metadata (text-only) audit on the CPU: CLIP's text tower runs only when asked for, the summary
says what did not run, and caption duplicates come from normalised-text hashing without a model."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.pipelines.audit_run import run_audit

pytestmark = pytest.mark.slow
CAPTIONS = [
    "Free Shipping!! Red dress for women",
    "free shipping - red DRESS for women",
    "a photo of a dog on the beach",
    "A photo of a dog on the beach.",
    "a photo of a cat",
    "Stock photo of a city skyline at night",
    None,
]


@pytest.fixture()
def metadata(tmp_path: Path) -> Path:
    folder = tmp_path / "meta"
    folder.mkdir()
    table = pa.table(
        {
            "URL": [f"http://127.0.0.1/{i}.jpg" for i in range(len(CAPTIONS))],
            "TEXT": pa.array(CAPTIONS, pa.string()),
            "SAMPLE_ID": list(range(len(CAPTIONS))),
        }
    )
    pq.write_table(table, folder / "part-00000.parquet")
    return folder


def test_text_only_rows_are_not_clip_embedded_on_a_cpu_unless_asked(
    metadata: Path, make_config, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    summary = run_audit(make_config(shards=[str(metadata)], out=str(out), device="cpu"))
    captioned = sum(c is not None for c in CAPTIONS)
    record = json.loads((out / "shards" / "part-00000.json").read_text())
    assert record["rows_captions_not_embedded"] == captioned
    assert not list((out / "embeddings").glob("*.text.parquet"))  # nothing for caption neighbours
    assert str(captioned) in summary.analyses_not_run["clip_text_embeddings"]
    assert "clip.encode_captions_on_cpu" in summary.analyses_not_run["clip_text_embeddings"]
    assert "caption_neighbours" in summary.analyses_not_run
    assert summary.rows_scored == len(CAPTIONS) - 1 and summary.rows_quarantined == 1
    scores = pq.read_table(out / "scores" / "part-00000.parquet")
    assert all(v is not None for v in scores.column("text_offensive_prob").to_pylist())  # text scorers ran
    from audit.report import write_report

    html = Path(write_report(str(out))[0]).read_text()
    assert "Analyses that did not run" in html and "<code>clip_text_embeddings</code>" in html

    asked = tmp_path / "asked"
    cfg = make_config(shards=[str(metadata)], out=str(asked), device="cpu",
                      **{"clip.encode_captions_on_cpu": True})  # fmt: skip
    summary = run_audit(cfg)
    assert "clip_text_embeddings" not in summary.analyses_not_run
    [emb] = (asked / "embeddings").glob("*.text.parquet")
    assert pq.read_metadata(emb).num_rows == captioned


def test_caption_duplicates_come_from_normalised_text_without_a_model(
    metadata: Path, make_config, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    summary = run_audit(make_config(shards=[str(metadata)], out=str(out), device="cpu"))
    dups = pq.read_table(out / "caption_duplicates.parquet").to_pylist()
    groups: dict[int, list[str]] = {}
    for d in dups:
        assert d["kind"] == "caption_text" and d["similarity"] == 1.0
        groups.setdefault(d["group"], []).append(d["row_id"])
    assert sorted(groups.values()) == [["part-00000:0", "part-00000:1"], ["part-00000:2", "part-00000:3"]]
    assert {d["representative_row_id"] for d in dups} == {"part-00000:0", "part-00000:2"}
    assert summary.neighbours["duplicate_rows_caption_text"] == 4
    assert summary.neighbours["duplicate_groups_caption_text"] == 2
    # the manifest times the merge itself (it once recorded the moment before it started)
    timings = json.loads((out / "manifest.json").read_text())["timings"]
    assert timings["finalize"] >= 0.01  # DuckDB groups the caption hashes: never a millisecond
    assert timings["total"] >= timings["validate"] + timings["shards"] + timings["finalize"]
