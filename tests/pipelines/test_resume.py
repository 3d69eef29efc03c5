"""Crash safety: kill -9 the driver at several points, rerun, and get the uninterrupted outputs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from audit.pipelines.audit_run import run_audit
from audit.schemas import Summary

pytestmark = pytest.mark.slow


def _inputs(sample_dir: Path, tmp_path: Path) -> list[str]:
    folder = tmp_path / "in"
    shutil.copytree(sample_dir / "parquet", folder / "parquet")
    shutil.copytree(sample_dir / "webdataset", folder / "webdataset")
    shutil.copytree(sample_dir / "laion_metadata", folder / "laion_metadata")
    return [str(folder / "parquet"), str(folder / "webdataset"), str(folder / "laion_metadata")]


def _outputs(run: Path) -> dict[str, object]:
    out: dict[str, object] = {
        name: pq.read_table(run / name) for name in ("flags.parquet", "quarantine.parquet")
    }
    for path in sorted((run / "scores").glob("*.parquet")):
        out[f"scores/{path.name}"] = pq.read_table(path)
    summary = Summary.model_validate_json((run / "summary.json").read_text())
    out["counts"] = (summary.rows_in, summary.rows_scored, summary.rows_quarantined, summary.rows_flagged)
    return out


def _assert_same(a: dict[str, object], b: dict[str, object]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        same = a[name].equals(b[name]) if hasattr(a[name], "equals") else a[name] == b[name]
        assert same, name


def _cli(cfg, config_path: Path) -> list[str]:
    config_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return [sys.executable, "-m", "audit.cli", "audit", "--config", str(config_path)]


def _kill_when(cmd: list[str], ready: Callable[[], bool], log: Path, timeout: float = 120) -> bool:
    """Start the CLI in its own process group; SIGKILL the group once ready() holds.
    Returns False if the run finished before the kill point was seen."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if ready():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.005)
        raise TimeoutError(f"kill point not reached: {log.read_text()[-2000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


KILL_POINTS: dict[str, Callable[[Path], bool]] = {
    "after-start": lambda run: (run / "manifest.json").exists(),
    "after-first-shard": lambda run: len(list((run / "shards").glob("*.json"))) >= 1,
    "in-finalize": lambda run: (run / "flags.parquet").exists() and not (run / "summary.json").exists(),
}


@pytest.fixture(scope="module")
def uninterrupted(sample_dir: Path, make_config, tmp_path_factory: pytest.TempPathFactory):
    """The reference: the same inputs audited without interruption (once for all kill points)."""
    base = tmp_path_factory.mktemp("uninterrupted")
    shards = _inputs(sample_dir, base)
    run_audit(make_config(shards=shards, out=str(base / "run")))
    return shards, _outputs(base / "run")


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_dash_nine_then_rerun_gives_the_uninterrupted_outputs(
    point: str, uninterrupted, make_config, tmp_path: Path
) -> None:
    shards, expected = uninterrupted
    run = tmp_path / "killed"
    cmd = _cli(make_config(shards=shards, out=str(run)), tmp_path / "config.yaml")
    killed = _kill_when(cmd, lambda: KILL_POINTS[point](run), tmp_path / "first.log")
    if killed:
        assert not (run / "summary.json").exists() or point == "in-finalize"
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    _assert_same(_outputs(run), expected)
    assert not list(run.rglob("*.tmp-*")), "a temp file survived the rerun"


def test_changed_shard_is_audited_again_and_corpus_outputs_follow(
    sample_dir: Path, make_config, tmp_path: Path
) -> None:
    shards = _inputs(sample_dir, tmp_path)
    cfg = make_config(shards=shards, out=str(tmp_path / "run"))
    run_audit(cfg)
    records = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run" / "shards").glob("*.json")}
    # replace one shard's content: the LAION metadata shard loses its offensive captions
    laion = Path(shards[2]) / "part-00000.parquet"
    table = pq.read_table(laion)
    keep = [i for i, t in enumerate(table.column("TEXT").to_pylist()) if t is None or "bitch" not in t]
    time.sleep(0.01)
    pq.write_table(table.take(keep), laion)
    summary = run_audit(cfg)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run" / "shards").glob("*.json")}
    changed = {name for name in records if after[name] != records[name]}
    assert changed == {"part-00000.json"}
    assert summary.rows_in == summary.rows_scored + summary.rows_quarantined
    flags = pq.read_table(tmp_path / "run" / "flags.parquet").to_pylist()
    from_changed = [f["caption"] for f in flags if f["shard_id"] == "part-00000"]
    assert from_changed and not any(c and "bitch" in c for c in from_changed)
    assert any(c and "bitch" in c for c in (f["caption"] for f in flags if f["shard_id"] != "part-00000"))
