"""CLIP is built only when rows need it: precomputed embeddings and a cached prompt bank need no
model, in a fresh process (as a new Dask worker is)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audit.clip_info import LazyClip, cache_key, load_probes
from audit.concepts import load_concept_bank
from audit.config import ClipSettings

REPO = Path(__file__).resolve().parents[1]

# A fresh process: build the models for a precomputed-embedding shard and score one batch of it.
WORKER = """
import json, sys
from audit.config import load_config
from audit.model_cache import get_models
from audit.readers import iter_shard
from audit.shard_audit import score_shard_table
from audit.shards import discover_shards

cfg = load_config(sys.argv[1], json.loads(sys.argv[2]))
models = get_models(cfg)
[spec] = discover_shards([sys.argv[3]])
batch = next(iter(iter_shard(spec, batch_rows=64).batches()))
scored = score_shard_table(batch, cfg)
print(json.dumps({
    "clip_built": models.clip.built,
    "open_clip_imported": "open_clip" in sys.modules,
    "embed_dim": models.clip.embed_dim,
    "concept_rows": sum(v is not None for v in scored.column("concept_hits").to_pylist()),
    "pixel_models_built": models.built(),
}))
"""


def _precomputed_folder(root: Path, dim: int) -> Path:
    """A small clip-retrieval folder in the tiny CLIP's space (its dimension and model name)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    for sub in ("metadata", "img_emb", "text_emb"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"caption": [f"a photo of a dog number {i}" for i in range(64)]}),
        root / "metadata" / "metadata_0.parquet",
    )
    for sub in ("img_emb", "text_emb"):
        np.save(root / sub / f"{sub}_0.npy", rng.standard_normal((64, dim)).astype(np.float16))
    return root


def _worker(cfg_path: Path, overrides: dict, shard: Path, cache: Path) -> dict:
    env = {**os.environ, "MMAUDIT_CACHE_DIR": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(cfg_path), json.dumps(overrides), str(shard)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_worker_with_a_warm_cache_builds_no_clip_for_precomputed_rows(
    tiny_clip_dir: Path, tmp_path: Path
) -> None:
    from tests.conftest import SAMPLE_CONFIG

    overrides = {
        "clip.model": f"local-dir:{tiny_clip_dir}",
        "clip.pretrained": None,
        "images.ocr.enabled": False,
    }
    shard = _precomputed_folder(tmp_path / "precomputed", 32)
    cache = tmp_path / "cache"
    cold = _worker(SAMPLE_CONFIG, overrides, shard, cache)
    assert cold["clip_built"]  # the prompt bank had to be embedded once
    assert list((cache / "clip").glob("*.npz"))
    warm = _worker(SAMPLE_CONFIG, overrides, shard, cache)
    assert warm == {
        "clip_built": False,
        "open_clip_imported": False,
        "embed_dim": 32,
        "concept_rows": 64,
        "pixel_models_built": [],
    }


def test_the_cached_bank_equals_the_freshly_embedded_one(
    tiny_clip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMAUDIT_CACHE_DIR", str(tmp_path))
    settings = ClipSettings(model=f"local-dir:{tiny_clip_dir}", pretrained=None)
    bank = load_concept_bank("concepts")
    fresh = load_probes(LazyClip(settings, "cpu"), bank)
    again = LazyClip(settings, "cpu")
    cached = load_probes(again, bank)
    assert not again.built and again.info is not None and again.embed_dim == 32
    np.testing.assert_array_equal(cached.matrix, fresh.matrix)
    assert [n.tolist() for n in cached.negatives] == [n.tolist() for n in fresh.negatives]
    assert again.record == LazyClip(settings, "cpu").resolve().record


def test_the_cache_key_follows_the_weights_and_the_settings(tiny_clip_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "clip"
    shutil.copytree(tiny_clip_dir, folder)
    settings = ClipSettings(model=f"local-dir:{folder}", pretrained=None)
    bank = load_concept_bank("concepts")
    key = cache_key(settings, "cpu", True, bank)
    assert key == cache_key(settings.model_copy(update={"batch_size": 7}), "cpu", True, bank)
    assert key != cache_key(settings, "cuda", True, bank)  # CUDA encodes in float16
    assert key != cache_key(settings.model_copy(update={"seed": 1}), "cpu", True, bank)
    assert key != cache_key(settings, "cpu", True, None)
    weights = folder / "open_clip_pytorch_model.bin"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert key != cache_key(settings, "cpu", True, bank)  # new weights: embedded again
