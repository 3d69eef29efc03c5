"""The audit on real distributed infrastructure started by the test on 127.0.0.1: a `dask scheduler`
and `dask worker` processes, and an S3-compatible object store (moto in server mode)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port}")


def _stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _config_file(cfg, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


@pytest.fixture
def dask_processes(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = [open(tmp_path / name, "w") for name in ("scheduler.log", "worker.log")]  # noqa: SIM115
    scheduler = subprocess.Popen(
        [BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=logs[0], stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_port(port, scheduler)
        worker = subprocess.Popen(
            [BIN / "dask", "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
             "--host", "127.0.0.1"],
            stdout=logs[1], stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield address
        finally:
            _stop(worker)
    finally:
        _stop(scheduler)
        for f in logs:
            f.close()


def test_audit_joins_an_external_scheduler(
    dask_processes: str, sample_dir: Path, make_config, tmp_path: Path
) -> None:
    cfg = make_config(shards=[str(sample_dir / "parquet")], out=str(tmp_path / "run"))
    config = _config_file(cfg, tmp_path / "config.yaml")
    result = subprocess.run(
        [BIN / "mmaudit", "audit", "--config", str(config), "--scheduler", dask_processes],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["scheduler"] == dask_processes and manifest["status"] == "complete"
    assert "external cluster not measured" in manifest["energy"]["method"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["rows_in"] == summary["rows_scored"] + summary["rows_quarantined"] > 0


def test_unreachable_scheduler_is_a_one_line_error(tmp_path: Path, sample_dir: Path) -> None:
    port = _free_port()
    result = subprocess.run(
        [BIN / "mmaudit", "audit", "--shards", str(sample_dir / "laion_metadata"),
         "--out", str(tmp_path / "r"), "--scheduler", f"tcp://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"error: dask.scheduler: cannot reach tcp://127.0.0.1:{port}" in result.stderr


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    port = _free_port()
    log = open(tmp_path / "moto.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([BIN / "moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        _wait_port(port, proc)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=10)
        yield {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        }
    finally:
        _stop(proc)
        log.close()


def test_shards_read_from_and_run_written_to_s3(s3_server: dict[str, str], sample_dir: Path, make_config,
                                               tmp_path: Path) -> None:  # fmt: skip
    env = {**os.environ, **s3_server}
    local = tmp_path / "in"
    shutil.copytree(sample_dir / "parquet", local / "parquet")
    shutil.copytree(sample_dir / "webdataset", local / "webdataset")
    upload = (
        "import s3fs, sys; fs = s3fs.S3FileSystem(); fs.mkdir('corpus');"
        "fs.put(sys.argv[1], 'corpus/in', recursive=True)"
    )
    subprocess.run([sys.executable, "-c", upload, str(local)], env=env, check=True, timeout=120)
    # the config file joins no shared cluster: the CLI starts its own LocalCluster with this env
    cfg = make_config(shards=["s3://corpus/in/parquet", "s3://corpus/in/webdataset"], out="s3://corpus/runs/one",
                      **{"dask.scheduler": None, "dask.n_workers": 1})  # fmt: skip
    config = _config_file(cfg, tmp_path / "config.yaml")
    result = subprocess.run([BIN / "mmaudit", "audit", "--config", str(config)],
                            capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run folder: s3://corpus/runs/one" in result.stdout
    read = (
        "import s3fs, json; fs = s3fs.S3FileSystem();"
        "print(json.dumps({'summary': json.loads(fs.cat('corpus/runs/one/summary.json')),"
        "'files': sorted(fs.find('corpus/runs/one')),"
        "'manifest': json.loads(fs.cat('corpus/runs/one/manifest.json'))}))"
    )
    got = json.loads(subprocess.run([sys.executable, "-c", read], env=env, check=True, capture_output=True,
                                    text=True, timeout=120).stdout)  # fmt: skip
    summary, files = got["summary"], got["files"]
    assert (
        summary["status"] == "complete"
        and summary["rows_in"] == summary["rows_scored"] + summary["rows_quarantined"]
    )
    for name in ("flags.parquet", "quarantine.parquet", "scores/00000.parquet", "scores/00002.parquet"):
        assert f"corpus/runs/one/{name}" in files
    assert not [f for f in files if ".tmp-" in f]
    assert all(
        s["path"].startswith("s3://corpus/in/") and len(s["sha256"]) == 64 for s in got["manifest"]["shards"]
    )


def test_a_killed_worker_loses_no_shard(
    dask_processes: str, sample_dir: Path, make_config, tmp_path: Path
) -> None:
    """SIGKILL the worker process while the audit runs: its nanny restarts it, the scheduler
    reschedules the lost task, and the run finishes with every row accounted for."""
    import signal

    import psutil

    cfg = make_config(
        shards=[str(sample_dir / "parquet"), str(sample_dir / "webdataset")], out=str(tmp_path / "run")
    )
    config = _config_file(cfg, tmp_path / "config.yaml")
    cmd = [BIN / "mmaudit", "audit", "--config", str(config), "--scheduler", dask_processes]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "manifest.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the worker is loading models or auditing a shard

    def is_nanny(p: psutil.Process) -> bool:
        cmdline = " ".join(p.info["cmdline"] or [])
        return dask_processes in cmdline and "worker" in cmdline

    nannies = [p for p in psutil.process_iter(["cmdline"]) if is_nanny(p)]
    workers = [c for n in nannies for c in n.children(recursive=True)]
    assert workers, "no worker process found"
    for w in workers:
        w.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["shards_done"] == 3
    from audit.sample import build_rows

    planted = sum(1 for r in build_rows())  # every sample row, in the two image shard folders
    assert summary["rows_in"] == summary["rows_scored"] + summary["rows_quarantined"] == planted
