"""bench-e2e's input held in memory for a run: every file found, locked (root here) or read through."""

from __future__ import annotations

import os
from pathlib import Path

from audit.benchmarks.page_cache import ResidentFiles, input_files


def _tree(tmp_path: Path) -> list[str]:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "x.parquet").write_bytes(b"1" * 1000)
    (tmp_path / "a" / "deep" / "y.npy").write_bytes(b"2" * 3000)
    (tmp_path / "a" / "empty").write_bytes(b"")
    (tmp_path / "z.parquet").write_bytes(b"3" * (1 << 20))
    return [str(tmp_path / "a"), str(tmp_path / "z.parquet")]


def _locked_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmLck:"))


def test_every_file_under_the_paths_is_held_and_released(tmp_path: Path) -> None:
    files = input_files(_tree(tmp_path))
    assert sorted(f.name for f in files) == ["empty", "x.parquet", "y.npy", "z.parquet"]
    before = _locked_kib()
    with ResidentFiles(files) as held:
        summary = held.summary()
        assert summary["mb"] == round((4000 + (1 << 20)) / 2**20, 1) and summary["mb_per_s"] > 0
        if os.geteuid() == 0:  # CAP_IPC_LOCK: the files are locked in memory for the block
            assert held.locked and _locked_kib() - before >= (1 << 20) // 1024
        else:
            assert not held.locked and "lock_error" in summary
    assert _locked_kib() == before


def test_without_locking_the_files_are_read_through(tmp_path: Path) -> None:
    files = input_files(_tree(tmp_path))
    held = ResidentFiles(files)
    held._read_all()  # the fallback where mlock is refused
    assert held.bytes == 4000 + (1 << 20) and not held.locked
