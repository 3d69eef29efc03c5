"""A benchmark child in a fresh interpreter, and what its process tree used: each process's peak
RSS and CPU seconds, and the peak of their summed RSS (Dask's workers are the child's descendants)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Sequence

from audit.benchmarks.common import peak_rss_mib


def _status_mib(pid: int | str, field: str) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def hwm_mib(pid: int | str = "self") -> float | None:
    """Peak RSS of one process (VmHWM). Not ru_maxrss: Linux carries ru_maxrss over fork and exec,
    so a worker spawned by a 1 GB driver would report at least 1 GB whatever it used."""
    return _status_mib(pid, "VmHWM:")


def rss_mib(pid: int | str = "self") -> float | None:
    """Resident memory of one process now (VmRSS)."""
    return _status_mib(pid, "VmRSS:")


def own_peak_mib() -> float:
    return hwm_mib() or peak_rss_mib()


class TreeSampler:
    """Samples a process and its descendants every ``every_s`` (psutil ships with dask.distributed):
    each one's peak RSS (its VmHWM where Linux has it, exact between samples), its CPU seconds (the
    last sample), and the peak of their summed RSS."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        self.pid, self.every_s = pid, every_s
        self.peak: dict[int, float] = {}  # MiB
        self.cpu: dict[int, float] = {}  # user + system seconds
        self.peak_total = 0.0  # MiB
        self.available = True  # False without psutil
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            import psutil
        except ImportError:
            self.available = False
            return
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            total = 0.0
            for p in procs:
                try:
                    with p.oneshot():
                        rss, t = p.memory_info().rss / 2**20, p.cpu_times()
                except psutil.Error:
                    continue
                total += rss
                peak = max(rss, hwm_mib(p.pid) or 0.0)
                self.peak[p.pid] = max(peak, self.peak.get(p.pid, 0.0))
                self.cpu[p.pid] = t.user + t.system
            self.peak_total = max(self.peak_total, total)
            self._stop.wait(self.every_s)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def descendant_peaks(self) -> dict[int, float]:
        return {p: v for p, v in self.peak.items() if p != self.pid}


def run_sampled(cmd: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> TreeSampler:
    """Run ``cmd`` to the end while sampling its tree; RuntimeError with the end of its output when it
    times out or fails."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    with TreeSampler(proc.pid) as sampler:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise RuntimeError(f"benchmark child timed out: {' '.join(cmd)}\n{out[-3000:]}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}): {' '.join(cmd)}\n{out[-4000:]}")
    return sampler


def stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop a process started with ``start_new_session=True`` and whatever it started (its process
    group): SIGTERM, then SIGKILL after ``grace_s``, then SIGKILL for a child it left behind."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
