"""Hostile-input suite: every case runs the real `mmaudit` CLI in a subprocess.

Error cases stop before any model loads, so they cost about a Python start each; a module's
selected cases are run a few at a time by one module-scoped fixture (``case_results``), and each
parametrised test then checks its own result.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the suite's helper module, hostile_inputs.py

from hostile_inputs import CaseBuilder, Expect, mmaudit

PARALLEL_CASES = 3  # subprocesses at once: most of a case's time is Python importing the CLI


def _selected(request: pytest.FixtureRequest, cases: dict[str, CaseBuilder]) -> list[str]:
    ids = []
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        if item.module is request.module and spec is not None and spec.params.get("case") in cases:
            ids.append(spec.params["case"])
    return list(dict.fromkeys(ids))


@pytest.fixture(scope="module")
def case_results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path
) -> dict[str, tuple[subprocess.CompletedProcess[str], Expect]]:
    """Build and run every selected case of the requesting module's ``CASES``, a few at a time."""
    cases: dict[str, CaseBuilder] = request.module.CASES
    planned = {}
    for case_id in _selected(request, cases):
        folder = tmp_path_factory.mktemp(case_id[:40])
        planned[case_id] = cases[case_id](folder, tiny_clip_dir)
    with ThreadPoolExecutor(PARALLEL_CASES) as pool:
        futures = {cid: pool.submit(mmaudit, *args) for cid, (args, _) in planned.items()}
        return {cid: (fut.result(), planned[cid][1]) for cid, fut in futures.items()}
