"""Dashboard fixtures: a private copy of the shared sample run, and a free local port."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"


@pytest.fixture
def review_run(sample_run: Path, tmp_path: Path) -> Path:
    """The session's real sample run, copied so that decisions written here stay in this test."""
    return Path(shutil.copytree(sample_run, tmp_path / "sample"))


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _keep_main_module():
    """AppTest runs the app as the `__main__` module; multiprocessing's spawn re-runs whatever
    `__main__` points at in every new Dask worker, so later tests would start the dashboard there.
    Put the real `__main__` back after each dashboard test."""
    import sys

    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main
