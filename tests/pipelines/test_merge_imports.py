"""The driver preloads what finalize needs while the shards run, and nothing a run does not need:
scipy.stats (0.7 s of CPU here, the cascade's Wilson intervals) only when the cascade is on."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from audit.pipelines.audit_run import _import_for_merge
before = "scipy.stats" in sys.modules
_import_for_merge({cascade})
print(before, "duckdb" in sys.modules, "scipy.stats" in sys.modules)
"""


@pytest.mark.parametrize("cascade", [False, True])
def test_scipy_stats_is_preloaded_only_for_a_cascade(cascade: bool) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(cascade=cascade)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "True", str(cascade)]
