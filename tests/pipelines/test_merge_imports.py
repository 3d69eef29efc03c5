"""The driver preloads what finalize needs while the shards run, and nothing a run does not need:
scipy.stats (0.7 s of CPU here, the cascade's Wilson intervals) only when the cascade is on."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from audit.pipelines.audit_run import _import_for_merge
seen = ["scipy.stats" in sys.modules]
_import_for_merge(False)
seen += ["duckdb" in sys.modules, "scipy.stats" in sys.modules]
_import_for_merge(True)
seen += ["scipy.stats" in sys.modules]
print(*seen)
"""


def test_scipy_stats_is_preloaded_only_for_a_cascade() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "False", "True"]
