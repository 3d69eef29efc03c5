"""The corpus-wide FAISS stages on the real sample: duplicates, clusters, outliers, kNN expansion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audit.embedding_store import read_shard_embeddings
from audit.pipelines.audit_run import run_audit
from audit.runfolder import RunFolder
from audit.sample import planted_cases
from audit.schemas import NEIGHBOURS_SCHEMA

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def neighbour_run(sample_dir: Path, make_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("neighbours") / "run"
    cfg = make_config(shards=[str(sample_dir / "parquet"), str(sample_dir / "webdataset")], out=str(out),
                      **{"neighbours.near_duplicate_similarity": 0.9})  # fmt: skip
    run_audit(cfg)
    return out


def _groups(run: Path, kind: str) -> dict[str, set[str]]:
    rows = pq.read_table(run / "duplicates.parquet").to_pylist()
    out: dict[str, set[str]] = {}
    for r in rows:
        if r["kind"] == kind:
            out.setdefault(f"{kind}:{r['group']}", set()).add(r["key"])
    return out


def test_exact_copies_group_with_their_original(neighbour_run: Path) -> None:
    groups = list(_groups(neighbour_run, "exact").values())
    for name in ("astronaut", "chelsea", "rocket"):
        assert any({f"photo-{name}", f"exactdup-{name}"} <= g for g in groups), name


def test_planted_near_duplicates_form_their_groups(neighbour_run: Path) -> None:
    groups = list(_groups(neighbour_run, "image").values())
    for name in ("astronaut", "chelsea", "rocket"):
        family = {
            f"photo-{name}",
            f"neardup-{name}-q40",
            f"neardup-{name}-resized",
            f"neardup-{name}-cropped",
        }
        assert any(family <= g for g in groups), (name, groups)


def test_every_row_with_an_embedding_gets_a_cluster_and_outlier_score(neighbour_run: Path) -> None:
    run = RunFolder(str(neighbour_run))
    for shard in ("00000", "00001", "00002"):
        table = pq.read_table(neighbour_run / "neighbours" / f"{shard}.parquet")
        assert table.schema.names == NEIGHBOURS_SCHEMA.names
        keys, _ = read_shard_embeddings(run, shard, "image")
        assert table.column("key").to_pylist() == keys
        assert table.column("cluster").null_count == 0 and table.column("outlier_score").null_count == 0
    clusters = pq.read_table(neighbour_run / "clusters.parquet").to_pylist()
    flagged = pq.read_table(neighbour_run / "flags.parquet").num_rows
    assert sum(c["n_flagged"] for c in clusters) <= flagged and sum(c["n_rows"] for c in clusters) > 0
    assert (neighbour_run / "index" / "image" / "index.json").is_file()


def test_summary_counts_duplicates_and_clusters(neighbour_run: Path) -> None:
    import json

    counts = json.loads((neighbour_run / "summary.json").read_text())["neighbours"]
    assert (
        counts["duplicate_rows_exact"] >= 6
        and counts["duplicate_rows_image"] >= 12
        and counts["clusters"] >= 1
    )


def test_knn_expansion_from_a_planted_seed_finds_its_copies(neighbour_run: Path, tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("photo-chelsea\n")
    result = subprocess.run(
        [sys.executable, "-m", "audit.cli", "expand", "--run", str(neighbour_run), "--seeds", str(seeds),
         "--min-similarity", "0.9"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    near = pq.read_table(neighbour_run / "near_flagged.parquet").to_pylist()
    found = {r["key"] for r in near}
    assert {"neardup-chelsea-q40", "neardup-chelsea-resized", "neardup-chelsea-cropped"} <= found
    assert all(r["seed_key"] == "photo-chelsea" and r["reason"] == "near-flagged" for r in near)
    assert "photo-chelsea" not in found
    assert not found & set(planted_cases()["generated"])  # shapes are nowhere near a cat photo
