"""Opening a run for review: the latest finished run under a runs folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from audit.errors import InputFileError
from audit.review import latest_run


def test_latest_run_is_the_most_recently_finished_one(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for i, name in enumerate(("old", "new", "unfinished")):
        (runs / name).mkdir(parents=True)
        if name != "unfinished":  # no summary.json: still running or failed
            (runs / name / "summary.json").write_text("{}")
            os.utime(runs / name / "summary.json", (1_000_000 + i, 1_000_000 + i))
    assert latest_run(runs) == str(runs / "new")


def test_no_finished_run_is_one_line_naming_the_folder(tmp_path: Path) -> None:
    for root in (tmp_path / "missing", tmp_path):
        with pytest.raises(InputFileError, match=f"^{root}: no finished run folder") as err:
            latest_run(root)
        assert "\n" not in str(err.value)
