from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MMAUDIT = [sys.executable, "-m", "audit.cli"]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MMAUDIT, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_help_lists_the_commands() -> None:
    out = _run("--help").stdout
    for command in ("audit", "sample", "report", "dashboard"):
        assert command in out


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_missing_input_exits_nonzero_with_one_line_and_no_run_output(tmp_path: Path) -> None:
    result = _run("audit", "--shards", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert _error_lines(result.stderr) == [
        f"error: {tmp_path / 'missing.parquet'}: no such file or directory"
    ]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_missing_column_exits_nonzero_naming_file_and_column(tmp_path: Path) -> None:
    pq.write_table(pa.table({"URL": ["http://x.invalid/a.jpg"]}), tmp_path / "nocaption.parquet")
    result = _run("audit", "--shards", str(tmp_path / "nocaption.parquet"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    [line] = _error_lines(result.stderr)
    assert "nocaption.parquet" in line and "'caption' or 'text'" in line
    assert not (tmp_path / "run" / "summary.json").exists()


def test_invalid_config_key_exits_nonzero_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dask:\n  workers: 3\n")
    result = _run("audit", "--config", str(cfg), "--shards", "x.parquet")
    assert result.returncode == 2
    [line] = _error_lines(result.stderr)
    assert "dask.workers" in line and "n_workers" in line


def test_sample_command_is_deterministic(tmp_path: Path) -> None:
    for out in ("a", "b"):
        assert _run("sample", "--out", str(tmp_path / out), "--quiet").returncode == 0
    for rel in ("parquet/00000.parquet", "webdataset/00002.tar", "laion_metadata/part-00000.parquet"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
