"""The benchmarks' child runner: a real child process tree, its peak memory and CPU seconds."""

from __future__ import annotations

import sys

import pytest

from audit.benchmarks.process_tree import hwm_mib, rss_mib, run_sampled

# a child that spawns a grandchild holding ~200 MiB for a second, and burns CPU itself
GRANDCHILD = "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.0)"
CHILD = (
    "import subprocess, sys, time\n"
    f"p = subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}])\n"
    "t = time.process_time()\n"
    "while time.process_time() - t < 0.6: pass\n"
    "p.wait()\n"
)


def test_the_tree_s_peaks_and_cpu_are_sampled() -> None:
    sampler = run_sampled([sys.executable, "-c", CHILD], timeout=60)
    assert sampler.available
    [grandchild] = sampler.descendant_peaks.values()
    assert grandchild >= 200  # its VmHWM, whatever the sampling missed
    assert sampler.peak_total >= 200
    assert sampler.cpu[sampler.pid] >= 0.5  # the child's own busy loop
    assert sampler.peak[sampler.pid] < grandchild


def test_a_failing_or_hanging_child_raises_with_its_output() -> None:
    with pytest.raises(RuntimeError, match=r"failed \(3\)(.|\n)*boom"):
        run_sampled([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], timeout=60)
    with pytest.raises(RuntimeError, match="timed out"):
        run_sampled([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)


def test_own_memory_figures() -> None:
    assert (rss_mib() or 0) > 1 and (hwm_mib() or 0) >= (rss_mib() or 0) * 0.9
