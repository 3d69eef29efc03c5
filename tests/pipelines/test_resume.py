"""Crash safety: SIGKILL the driver and its own Dask workers mid-shard, then again while the corpus-wide
stages run; the reruns must give exactly the outputs of an uninterrupted run in another folder.

The driver is a real `mmaudit audit` process with its own LocalCluster (never the suite's shared
cluster), started in its own process group so one killpg takes the driver and every worker down.
The kill points are read from the run folder's state, and the test fails if a run finishes before
its kill point was seen.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from audit.pipelines.audit_run import run_audit
from audit.schemas import Summary

pytestmark = pytest.mark.slow
SAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "pipelines" / "configs" / "sample.yaml"

# Files whose content is the run's result. Logs, the manifest (timings, timestamps) and the FAISS
# index files (compared through what they produce: neighbours/, duplicates, clusters) are not.
NOT_COMPARED = ("logs/", "manifest.json", "index/")


def _inputs(sample_dir: Path, folder: Path) -> list[str]:
    """Four shards of three formats: img2dataset parquet x2, webdataset tar + sidecar, LAION metadata."""
    for sub in ("parquet", "webdataset", "laion_metadata"):
        shutil.copytree(sample_dir / sub, folder / sub)
    return [str(folder / sub) for sub in ("parquet", "webdataset", "laion_metadata")]


def _command(shards: list[str], out: Path, tiny_clip_dir: Path, known_bad: Path) -> list[str]:
    sets = {
        "clip.model": f"local-dir:{tiny_clip_dir}",
        "clip.pretrained": "null",
        "clip.allow_random_weights": "false",
        "images.known_bad_lists": f"[{known_bad}]",
        "dask.scheduler": "null",  # its own LocalCluster: the kill takes its workers down too
        "dask.n_workers": "1",  # one shard at a time, so a kill leaves some done and some not
        "dask.retries": "0",
        "dask.batch_rows": "4",  # many batches per shard: a shard is in flight for seconds
    }
    cmd = [sys.executable, "-m", "audit.cli", "audit", "--config", str(SAMPLE_CONFIG), "--out", str(out)]
    for s in shards:
        cmd += ["--shards", s]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd


def _records(run: Path) -> list[Path]:
    return sorted(p for p in (run / "shards").glob("*.json") if ".tmp-" not in p.name)


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name] if folder.exists() else []


def mid_shard(run: Path) -> bool:
    """At least one shard recorded done and another one writing its outputs right now. A shard's
    scores temp file exists from its first batch until its rename, and the record comes after the
    rename, so a scores temp file seen after the records were counted means a shard in flight."""
    return len(_records(run)) >= 1 and bool(_temp_files(run / "scores"))


def in_corpus_stages(n_shards: int) -> Callable[[Path], bool]:
    """Every shard recorded, no summary yet: FAISS neighbours, duplicates or the final merge run."""
    return lambda run: len(_records(run)) == n_shards and not (run / "summary.json").exists()


def _group_alive(pgid: int) -> list[int]:
    """Processes of the process group that are still running (zombies awaiting their reaper are not)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def _kill_when(cmd: list[str], ready: Callable[[], bool], log: Path, timeout: float = 180) -> None:
    """Run the CLI in a new process group and SIGKILL the whole group (driver and its Dask workers)
    as soon as ``ready()`` holds. Fails if the run ends first: a kill point never reached is a test
    that proves nothing."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                pytest.fail(
                    f"the run ended (exit {proc.returncode}) before the kill point: {log.read_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"kill point not reached in {timeout:.0f} s: {log.read_text()[-3000:]}")
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while (alive := _group_alive(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive, f"processes of the killed run survive: {alive}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _outputs(run: Path) -> dict[str, object]:
    """Every result file of a run folder: parquet files as tables, JSON as documents, .npy arrays."""
    out: dict[str, object] = {}
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        rel = path.relative_to(run).as_posix()
        if rel.startswith(NOT_COMPARED):
            continue
        if path.suffix == ".parquet":
            out[rel] = pq.read_table(path)
        elif path.suffix == ".json" and rel.startswith("shards/"):
            record = json.loads(path.read_text())
            out[rel] = {k: v for k, v in record.items() if k not in ("path", "seconds", "worker")}
        elif path.suffix == ".json":
            out[rel] = json.loads(path.read_text())
        elif path.suffix == ".npy":
            out[rel] = np.load(path)
        else:
            out[rel] = path.read_bytes()
    return out


def _assert_same(got: dict[str, object], expected: dict[str, object]) -> None:
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        have = got[name]
        if isinstance(want, np.ndarray):
            assert np.array_equal(have, want), name
        elif hasattr(want, "equals"):
            assert have.equals(want), f"{name} differs from the uninterrupted run"
        else:
            assert have == want, name


@pytest.fixture(scope="module")
def corpus(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return _inputs(sample_dir, tmp_path_factory.mktemp("resume-inputs"))


def test_sigkill_mid_shard_and_in_the_corpus_stages_then_rerun_gives_the_uninterrupted_outputs(
    corpus: list[str], sample_dir: Path, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    known_bad = sample_dir / "known_bad.csv"
    reference = tmp_path / "uninterrupted"
    done = subprocess.run(_command(corpus, reference, tiny_clip_dir, known_bad), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    expected = _outputs(reference)
    n_shards = len(_records(reference))
    assert n_shards == 4

    run = tmp_path / "killed"
    cmd = _command(corpus, run, tiny_clip_dir, known_bad)
    _kill_when(cmd, lambda: mid_shard(run), tmp_path / "first.log")
    # the kill landed inside a shard: some shards done, one caught writing, no summary
    assert 1 <= len(_records(run)) < n_shards
    assert _temp_files(run / "scores"), "no shard was in flight when the run was killed"
    assert not (run / "summary.json").exists()
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"

    _kill_when(cmd, lambda: in_corpus_stages(n_shards)(run), tmp_path / "second.log")
    assert len(_records(run)) == n_shards and not (run / "summary.json").exists()

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{n_shards} of {n_shards} shards already done" in rerun.stderr
    _assert_same(_outputs(run), expected)
    assert not _temp_files(run), "a temp file survived the rerun"
    assert json.loads((run / "manifest.json").read_text())["status"] == "complete"


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
    summary: Summary = run_audit(cfg)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run" / "shards").glob("*.json")}
    changed = {name for name in records if after[name] != records[name]}
    assert changed == {"part-00000.json"}
    assert summary.rows_in == summary.rows_scored + summary.rows_quarantined
    flags = pq.read_table(tmp_path / "run" / "flags.parquet").to_pylist()
    from_changed = [f["caption"] for f in flags if f["shard_id"] == "part-00000"]
    assert from_changed and not any(c and "bitch" in c for c in from_changed)
    assert any(c and "bitch" in c for c in (f["caption"] for f in flags if f["shard_id"] != "part-00000"))
