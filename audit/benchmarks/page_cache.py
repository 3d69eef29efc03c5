"""A benchmark's input held in memory while a run reads it: each file is mapped and mlock()ed, which
reads it in and keeps the kernel's reclaim from dropping it (this VM's DAMON reclaim evicted a 2 GB
corpus within seconds of reading it through, and the run after read it at disk speed). Where mlock
is refused (no CAP_IPC_LOCK, RLIMIT_MEMLOCK), the files are read through once instead."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from pathlib import Path

_PROT_READ, _MAP_SHARED = 1, 1
_MAP_FAILED = ctypes.c_void_p(-1).value


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


def input_files(paths: list[str]) -> list[Path]:
    """Every file under ``paths`` (files, or folders walked)."""
    roots = [Path(p) for p in paths]
    return [f for r in roots for f in ([r] if r.is_file() else sorted(r.rglob("*"))) if f.is_file()]


class ResidentFiles:
    """``with ResidentFiles(files) as r:`` the files stay in memory until the block ends;
    ``r.summary()`` says how many MB, whether they were locked, and how fast they were read in (a
    few hundred MB/s: from disk)."""

    def __init__(self, files: list[Path], chunk: int = 1 << 24) -> None:
        self.files, self.chunk = files, chunk
        self._maps: list[tuple[int, int]] = []
        self._libc: ctypes.CDLL | None = None
        self.locked = False
        self.error: str | None = None
        self.bytes = 0
        self.seconds = 0.0

    def __enter__(self) -> ResidentFiles:
        t0 = time.perf_counter()
        self.locked = self._lock_all()
        if not self.locked:
            self._read_all()
        self.seconds = time.perf_counter() - t0
        return self

    def _lock_all(self) -> bool:
        try:
            libc = self._libc = _libc()
        except OSError as e:
            self.error = str(e)
            return False
        for f in self.files:
            size = f.stat().st_size
            if not size:
                continue
            fd = os.open(f, os.O_RDONLY)
            try:
                addr = libc.mmap(None, size, _PROT_READ, _MAP_SHARED, fd, 0)
            finally:
                os.close(fd)  # the mapping keeps the file
            if addr in (None, _MAP_FAILED):
                self.error = f"mmap {f.name}: {os.strerror(ctypes.get_errno())}"
                self._release()
                return False
            self._maps.append((addr, size))
            if libc.mlock(addr, size) != 0:
                self.error = f"mlock: {os.strerror(ctypes.get_errno())}"
                self._release()
                return False
            self.bytes += size
        return True

    def _read_all(self) -> None:
        self.bytes = 0
        for f in self.files:
            with open(f, "rb", buffering=0) as fh:
                while block := fh.read(self.chunk):
                    self.bytes += len(block)

    def _release(self) -> None:
        if not self._maps or self._libc is None:
            return
        libc = self._libc
        for addr, size in self._maps:
            libc.munlock(addr, size)
            libc.munmap(addr, size)
        self._maps = []

    def __exit__(self, *exc: object) -> None:
        self._release()

    def summary(self) -> dict[str, object]:
        mb = self.bytes / 2**20
        out: dict[str, object] = {
            "mb": round(mb, 1),
            "locked": self.locked,
            "seconds": round(self.seconds, 2),
            "mb_per_s": round(mb / max(self.seconds, 1e-9), 1),
        }
        if self.error:
            out["lock_error"] = self.error
        return out
