"""Keys that repeat across shards never merge two rows in the corpus-wide FAISS outputs.

img2dataset numbers every output folder from 000000000, so two shards share all their keys while
holding different images. Duplicates, neighbours, cluster flag counts and kNN expansion name rows
by ``row_id`` (``<shard_id>:<row_index>``) and keep ``key`` only as the dataset's label.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.pipelines.audit_run import run_audit

pytestmark = pytest.mark.slow

N, DIM = 6, 32  # rows per shard; the tiny test CLIP's embedding width
KEYS = [f"{i:09d}" for i in range(N)]  # the same keys in both shards, as img2dataset writes them


def _sha(shard: str, i: int) -> str:
    return hashlib.sha256(f"{shard}-{i}".encode()).hexdigest()


@pytest.fixture(scope="module")
def twin_run(make_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards metadata_0 (A) and metadata_1 (B), both keyed 000000000..000000005, different images:
    B:0 is a near copy of A:3, B:5 of A:1, B:4 a byte copy of A:2 (same sha256); only A:1 is tagged
    NSFW (flagged)."""
    base = tmp_path_factory.mktemp("twin-keys")
    rng = np.random.default_rng(7)
    a = rng.standard_normal((N, DIM)).astype(np.float32)
    b = rng.standard_normal((N, DIM)).astype(np.float32)
    b[0] = a[3] + 0.01 * rng.standard_normal(DIM).astype(np.float32)
    b[5] = a[1] + 0.01 * rng.standard_normal(DIM).astype(np.float32)
    sha = {"a": [_sha("a", i) for i in range(N)], "b": [_sha("b", i) for i in range(N)]}
    sha["b"][4] = sha["a"][2]
    nsfw = {"a": ["UNLIKELY"] * N, "b": ["UNLIKELY"] * N}
    nsfw["a"][1] = "NSFW"
    for sub in ("img_emb", "text_emb", "metadata"):
        (base / "emb" / sub).mkdir(parents=True)
    for n, (name, vectors) in enumerate((("a", a), ("b", b))):
        np.save(base / "emb" / "img_emb" / f"img_emb_{n}.npy", vectors)
        np.save(base / "emb" / "text_emb" / f"text_emb_{n}.npy", vectors)  # caption == image: no mismatch
        meta = {
            "key": KEYS,
            "caption": [f"picture {i} of folder {name}" for i in range(N)],
            "sha256": sha[name],
            "NSFW": nsfw[name],
        }
        pq.write_table(pa.table(meta), base / "emb" / "metadata" / f"metadata_{n}.parquet")
    out = base / "run"
    run_audit(
        make_config(
            shards=[str(base / "emb")], out=str(out), **{"neighbours.near_duplicate_similarity": 0.97}
        )
    )
    return out


def _members(run: Path, kind: str) -> list[dict]:
    return [r for r in pq.read_table(run / "duplicates.parquet").to_pylist() if r["kind"] == kind]


def test_neighbour_rows_are_named_by_row_id_beside_their_key(twin_run: Path) -> None:
    for shard in ("metadata_0", "metadata_1"):
        table = pq.read_table(twin_run / "neighbours" / f"{shard}.parquet")
        assert table.column("row_id").to_pylist() == [f"{shard}:{i}" for i in range(N)]
        assert table.column("key").to_pylist() == KEYS


def test_duplicate_groups_hold_the_copied_rows_not_their_namesakes(twin_run: Path) -> None:
    exact = _members(twin_run, "exact")
    assert {(r["row_id"], r["key"]) for r in exact} == {("metadata_0:2", KEYS[2]), ("metadata_1:4", KEYS[4])}
    reps = {(r["representative_row_id"], r["representative_key"]) for r in exact}
    assert reps == {("metadata_0:2", KEYS[2])}  # the first copy in corpus order
    for kind in ("image", "caption"):
        groups: dict[int, set[tuple[str, str]]] = {}
        for r in _members(twin_run, kind):
            groups.setdefault(r["group"], set()).add((r["row_id"], r["key"]))
        assert sorted(groups.values(), key=sorted) == [
            {("metadata_0:1", KEYS[1]), ("metadata_1:5", KEYS[5])},
            {("metadata_0:3", KEYS[3]), ("metadata_1:0", KEYS[0])},
        ], kind
        for r in _members(twin_run, kind):  # a representative is a member of its own group
            assert (r["representative_row_id"], r["representative_key"]) in groups[r["group"]]


def test_cluster_flag_counts_count_the_flagged_row_and_not_its_namesake(twin_run: Path) -> None:
    flags = pq.read_table(twin_run / "flags.parquet", columns=["shard_id", "row_index"]).to_pylist()
    flagged = {(r["shard_id"], r["row_index"]) for r in flags}
    assert ("metadata_0", 1) in flagged and ("metadata_1", 1) not in flagged  # the setup holds
    clusters = pq.read_table(twin_run / "clusters.parquet").to_pylist()
    assert sum(c["n_rows"] for c in clusters) == 2 * N
    assert sum(c["n_flagged"] for c in clusters) == len(flagged)  # every row has an image embedding


def _expand(run: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "audit.cli", "expand", "--run", str(run), "--min-similarity", "0.97", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_expansion_seeds_by_row_id_and_links_to_that_row(twin_run: Path) -> None:
    done = _expand(twin_run, "--seed-row-id", "metadata_0:3")
    assert done.returncode == 0, done.stderr[-2000:]
    near = pq.read_table(twin_run / "near_flagged.parquet").to_pylist()
    assert [(r["row_id"], r["key"], r["seed_row_id"], r["seed_key"]) for r in near] == [
        ("metadata_1:0", KEYS[0], "metadata_0:3", KEYS[3])
    ]
    # B:3 shares A:3's key but not its image: as a seed it finds nothing
    done = _expand(twin_run, "--seed-row-id", "metadata_1:3")
    assert done.returncode == 0, done.stderr[-2000:]
    assert pq.read_table(twin_run / "near_flagged.parquet").num_rows == 0


def test_a_seed_that_is_not_a_row_id_is_one_error_line(twin_run: Path) -> None:
    done = _expand(twin_run, "--seed-row-id", KEYS[3])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: expand: seed '{KEYS[3]}' is not a row id (expected <shard_id>:<row_index>)"
    ]


def test_seeds_without_an_image_embedding_are_named(twin_run: Path) -> None:
    done = _expand(twin_run, "--seed-row-id", "metadata_0:3", "--seed-row-id", "metadata_9:0")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 seed row has no image embedding in this run: metadata_9:0" in done.stderr
    done = _expand(twin_run, "--seed-row-id", "metadata_9:0")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: none of the 1 seed rows has an image")


def test_expansion_from_decisions_seeds_the_decided_row_only(twin_run: Path) -> None:
    from audit.review import load_run, record_decision

    record_decision(load_run(str(twin_run)), "metadata_0:1", "confirm_harmful", "reviewer-a")
    done = _expand(twin_run, "--from-decisions")
    assert done.returncode == 0, done.stderr[-2000:]
    near = pq.read_table(twin_run / "near_flagged.parquet").to_pylist()
    # B:1 shares the decided row's key but is neither a seed nor near it; B:5 is A:1's copy
    assert [(r["row_id"], r["seed_row_id"], r["seed_key"]) for r in near] == [
        ("metadata_1:5", "metadata_0:1", KEYS[1])
    ]
