"""The corpus-wide FAISS stages on the real sample: duplicates, clusters, outliers, kNN expansion."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from audit.embedding_store import read_shard_embeddings
from audit.pipelines.audit_run import run_audit
from audit.runfolder import RunFolder
from audit.sample import build_rows, planted_cases
from audit.schemas import NEIGHBOURS_SCHEMA

pytestmark = pytest.mark.slow


def _pixel_features(data: bytes) -> np.ndarray:
    """A 32-d image descriptor from the pixels (4x8 grey thumbnail, centred): copies of one photo
    land close together, different pictures do not. The tiny test CLIP has random weights and
    cannot tell pictures apart, so the FAISS stages are tested on these instead."""
    im = Image.open(io.BytesIO(data)).convert("L").resize((8, 4))
    v = np.asarray(im, np.float32).reshape(-1)
    return v - v.mean()


def _decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except (OSError, SyntaxError, ValueError):
        return False
    return True


def _caption_features(text: str) -> np.ndarray:
    v = np.zeros(32, np.float32)
    for word in text.lower().split():
        v[int(hashlib.md5(word.encode()).hexdigest(), 16) % 32] += 1
    return v


@pytest.fixture(scope="module")
def neighbour_run(make_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's rows with a decodable image and a text caption as a clip-retrieval folder with
    pixel-based embeddings."""
    base = tmp_path_factory.mktemp("neighbours")
    rows = [
        r
        for r in build_rows()
        if r.image and r.case != "fetch_failed" and isinstance(r.caption, str) and _decodes(r.image)
    ]
    for sub in ("img_emb", "text_emb", "metadata"):
        (base / "emb" / sub).mkdir(parents=True)
    np.save(base / "emb" / "img_emb" / "img_emb_0.npy", np.stack([_pixel_features(r.image) for r in rows]))
    np.save(
        base / "emb" / "text_emb" / "text_emb_0.npy", np.stack([_caption_features(r.caption) for r in rows])
    )
    meta = {
        "key": [r.key for r in rows],
        "caption": [r.caption for r in rows],
        "sha256": [hashlib.sha256(r.image).hexdigest() for r in rows],
    }
    pq.write_table(pa.table(meta), base / "emb" / "metadata" / "metadata_0.parquet")
    out = base / "run"
    run_audit(
        make_config(
            shards=[str(base / "emb")], out=str(out), **{"neighbours.near_duplicate_similarity": 0.97}
        )
    )
    return out


def _groups(run: Path, kind: str) -> dict[str, set[str]]:
    """Groups of a kind as sets of keys (the sample's keys are unique within this single shard)."""
    rows = pq.read_table(run / "duplicates.parquet").to_pylist()
    out: dict[str, set[str]] = {}
    for r in rows:
        if r["kind"] == kind:
            assert r["row_id"].startswith("metadata_0:")
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
        [group] = [g for g in groups if family & g]
        assert family <= group, (name, group)
        assert not any(k.startswith(("gen-", "known-bad-")) for k in group), group


def test_every_row_with_an_embedding_gets_a_cluster_and_outlier_score(neighbour_run: Path) -> None:
    run = RunFolder(str(neighbour_run))
    for shard in ("metadata_0",):
        table = pq.read_table(neighbour_run / "neighbours" / f"{shard}.parquet")
        assert table.schema.names == NEIGHBOURS_SCHEMA.names
        row_ids, _ = read_shard_embeddings(run, shard, "image")  # the files are keyed by row id
        assert table.column("row_id").to_pylist() == row_ids
        scores = pq.read_table(neighbour_run / "scores" / f"{shard}.parquet", columns=["row_id", "key"])
        key_of = dict(zip(scores.column("row_id").to_pylist(), scores.column("key").to_pylist(), strict=True))
        assert table.column("key").to_pylist() == [key_of[r] for r in row_ids]
        assert table.column("cluster").null_count == 0 and table.column("outlier_score").null_count == 0
    clusters = pq.read_table(neighbour_run / "clusters.parquet").to_pylist()
    flagged = set(pq.read_table(neighbour_run / "flags.parquet").column("row_id").to_pylist())
    embedded = set(row_ids)
    assert sum(c["n_flagged"] for c in clusters) == len(flagged & embedded)  # each flagged row once
    assert sum(c["n_rows"] for c in clusters) == len(embedded)
    assert (neighbour_run / "index" / "image" / "index.json").is_file()


def test_duplicates_are_the_same_when_spilled_to_many_small_buckets(
    neighbour_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audit.neighbours import spill
    from audit.pipelines.duplicates_run import write_duplicates
    from audit.schemas import Manifest

    def rows() -> list[tuple]:
        return sorted(
            tuple(r.values()) for r in pq.read_table(neighbour_run / "duplicates.parquet").to_pylist()
        )

    before = rows()
    run = RunFolder(str(neighbour_run))
    done = [r for r in Manifest.model_validate(run.read_json(run.manifest)).shards if r.status == "done"]
    monkeypatch.setattr(spill, "BUCKET_RECORDS", 3)
    counts = write_duplicates(run, done)
    assert rows() == before and len(before) == sum(counts.values()) > 0


def test_summary_counts_duplicates_and_clusters(neighbour_run: Path) -> None:
    import json

    counts = json.loads((neighbour_run / "summary.json").read_text())["neighbours"]
    assert (
        counts["duplicate_rows_exact"] >= 6
        and counts["duplicate_rows_image"] >= 12
        and counts["clusters"] >= 1
    )


def test_knn_expansion_from_a_planted_seed_finds_its_copies(neighbour_run: Path, tmp_path: Path) -> None:
    scores = pq.read_table(neighbour_run / "scores" / "metadata_0.parquet", columns=["row_id", "key"])
    [seed] = [r["row_id"] for r in scores.to_pylist() if r["key"] == "photo-chelsea"]
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(f"{seed}\n")  # a seed file holds one row id per line
    result = subprocess.run(
        [sys.executable, "-m", "audit.cli", "expand", "--run", str(neighbour_run), "--seeds", str(seeds),
         "--min-similarity", "0.97"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    near = pq.read_table(neighbour_run / "near_flagged.parquet").to_pylist()
    found = {r["key"] for r in near}
    assert {"neardup-chelsea-q40", "neardup-chelsea-resized", "neardup-chelsea-cropped"} <= found
    assert all(r["seed_row_id"] == seed and r["seed_key"] == "photo-chelsea" for r in near)
    assert all(r["reason"] == "near-flagged" for r in near)
    assert "photo-chelsea" not in found
    assert not found & set(planted_cases()["generated"])  # shapes are nowhere near a cat photo
