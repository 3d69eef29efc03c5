from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

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


def _one_error(result: subprocess.CompletedProcess[str]) -> str:
    """The run failed as bad input must: exit 2, one `error:` line, no traceback."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Error:" not in result.stderr.replace("error:", "")
    [line] = _error_lines(result.stderr)
    return line


def _shard(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "00000.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"URL": ["http://x.invalid/a.jpg"], "TEXT": ["a dog"]}), path)
    return path


def test_set_without_equals_is_one_error_line(tmp_path: Path) -> None:
    line = _one_error(_run("audit", "--set", "foo", "--out", str(tmp_path / "run")))
    assert line == "error: override 'foo' must look like key.path=value"
    assert not (tmp_path / "run").exists()


def test_set_with_invalid_yaml_names_the_override(tmp_path: Path) -> None:
    line = _one_error(_run("audit", "--set", "clip.batch_size=[1,", "--out", str(tmp_path / "run")))
    assert line.startswith("error: override 'clip.batch_size=[1,': value is not valid YAML")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("version: 1\nrules: [\n", "not valid YAML"),
        ("- id: a\n", "must be a mapping"),
        ("", "is empty"),
        ("version: 1\nname: t\nrules: [oops]\n", "rule #0: not a mapping"),
    ],
    ids=["bad-yaml", "list", "empty", "rule-not-mapping"],
)
def test_malformed_rules_file_stops_the_audit_naming_the_file(tmp_path: Path, body: str, says: str) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(body)
    shard = _shard(tmp_path)
    result = _run("audit", "--shards", str(shard), "--set", f"rules={rules}", "--out", str(tmp_path / "run"))
    line = _one_error(result)
    assert line.startswith(f"error: {rules}: ") and says in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("body", ["clip: [1,\n", "- a\n"], ids=["bad-yaml", "list"])
def test_malformed_config_file_names_the_file(tmp_path: Path, body: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(body)
    assert _one_error(_run("audit", "--config", str(cfg))).startswith(f"error: {cfg}: ")


def test_config_that_is_a_folder_names_it(tmp_path: Path) -> None:
    line = _one_error(_run("audit", "--config", str(tmp_path)))
    assert line.startswith(f"error: {tmp_path}: cannot read the config")


def test_out_pointing_at_a_file_is_refused_and_the_file_kept(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    shard = _shard(tmp_path)
    line = _one_error(_run("audit", "--shards", str(shard), "--out", str(target)))
    assert line == f"error: --out {target}: is an existing file, not a folder"
    assert target.read_text() == "mine"
    line = _one_error(_run("audit", "--shards", str(shard), "--out", str(target / "run")))
    assert line == f"error: --out {target / 'run'}: {target} is an existing file, not a folder"


def test_other_commands_refuse_out_pointing_at_a_file(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    line = _one_error(_run("sample", "--out", str(target)))
    assert line == f"error: --out {target}: is an existing file, not a folder"
    shard = _shard(tmp_path)
    line = _one_error(_run("fetch", "--shards", str(shard), "--out", str(target)))
    assert line == f"error: --out {target}: is an existing file, not a folder"
    line = _one_error(_run("export-embeddings", "--run", str(tmp_path / "run"), "--out", str(target)))
    assert line == f"error: --out {target}: is an existing file, not a folder"
    assert target.read_text() == "mine"


def test_expand_with_a_missing_or_unreadable_seeds_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "seeds.txt"
    line = _one_error(_run("expand", "--run", str(tmp_path / "run"), "--seeds", str(missing)))
    assert line == f"error: --seeds {missing}: no such file"
    line = _one_error(_run("expand", "--run", str(tmp_path / "run"), "--seeds", str(tmp_path)))
    assert line.startswith(f"error: --seeds {tmp_path}: cannot read it")


def test_report_of_a_missing_run_folder_is_one_line(tmp_path: Path) -> None:
    line = _one_error(_run("report", "--run", str(tmp_path / "nope")))
    assert str(tmp_path / "nope") in line and "not a finished run folder" in line


def test_scheduler_that_is_not_an_address_is_one_line_and_leaves_no_run(tmp_path: Path) -> None:
    shard = _shard(tmp_path)
    result = _run("audit", "--shards", str(shard), "--scheduler", "nonsense", "--out", str(tmp_path / "run"))
    assert _one_error(result).startswith("error: dask.scheduler: cannot reach nonsense (")
    assert not (tmp_path / "run").exists()  # created for the run, removed with it
