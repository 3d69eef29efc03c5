"""A run stopped by bad input after its run folder was created leaves nothing that looks like a
run: a new folder is removed, an existing one keeps its finished shards and says `failed`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = pytest.mark.slow
MMAUDIT = [sys.executable, "-m", "audit.cli"]


def _audit(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MMAUDIT, "audit", "--config", str(config)], capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def _one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    return line


def _clip_retrieval(root: Path, dim: int, index: int) -> Path:
    """A real clip-retrieval folder: img_emb/, text_emb/ and metadata/ aligned row for row."""
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(index)
    np.save(root / "img_emb" / f"img_emb_{index}.npy", rng.normal(size=(3, dim)).astype(np.float16))
    np.save(root / "text_emb" / f"text_emb_{index}.npy", rng.normal(size=(3, dim)).astype(np.float16))
    table = pa.table({"caption": ["a dog", "a cat", "a bird"], "url": [f"u{i}" for i in range(3)]})
    pq.write_table(table, root / "metadata" / f"metadata_{index}.parquet")
    return root


def _config(make_config, path: Path, shards: list[Path], out: Path) -> Path:
    cfg = make_config(shards=[str(s) for s in shards], out=str(out))  # the tiny CLIP makes 32-d
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def test_fatal_error_in_a_new_run_folder_leaves_no_run(tmp_path: Path, make_config) -> None:
    wrong = _clip_retrieval(tmp_path / "wrong", dim=768, index=1)
    out = tmp_path / "run"
    line = _one_error(_audit(_config(make_config, tmp_path / "c.yaml", [wrong], out)))
    assert "precomputed embeddings are 768-d" in line and str(wrong) in line
    assert not out.exists()  # no manifest saying `running`, no empty folders


def test_fatal_error_in_a_finished_run_keeps_its_shards_and_marks_it_failed(
    tmp_path: Path, make_config
) -> None:
    good = _clip_retrieval(tmp_path / "good", dim=32, index=0)
    wrong = _clip_retrieval(tmp_path / "wrong", dim=768, index=1)
    out = tmp_path / "run"
    first = _config(make_config, tmp_path / "first.yaml", [good], out)
    assert _audit(first).returncode == 0
    scores = (out / "scores" / "metadata_0.parquet").read_bytes()

    line = _one_error(_audit(_config(make_config, tmp_path / "second.yaml", [good, wrong], out)))
    assert "precomputed embeddings are 768-d" in line
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"] == line.removeprefix("error: ")
    assert manifest["finished_at"] is not None
    assert not (out / "summary.json").exists()  # a summary only describes a finished run
    assert (out / "scores" / "metadata_0.parquet").read_bytes() == scores
    assert json.loads((out / "shards" / "metadata_0.json").read_text())["status"] == "done"
    assert not (out / "scores" / "metadata_1.parquet").exists()

    again = _audit(first)  # the finished shard is kept for a rerun, which skips it
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 of 1 shards already done" in again.stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
