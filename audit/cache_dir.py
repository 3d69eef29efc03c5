"""Where mmaudit keeps what it can rebuild: JIT code (Numba) and embedded prompt banks.

``MMAUDIT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/mmaudit`` (``~/.cache/mmaudit``). Nothing in
it is needed for correctness: deleting it costs one rebuild. No heavy imports here: the kernels
package reads it before Numba compiles anything.
"""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir(*parts: str) -> Path:
    root = os.environ.get("MMAUDIT_CACHE_DIR")
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmaudit"
    return base.joinpath(*parts)


def numba_cache_dir() -> str:
    """NUMBA_CACHE_DIR when the user set it, else mmaudit's own (works for read-only installs too)."""
    return os.environ.get("NUMBA_CACHE_DIR") or str(user_cache_dir("numba"))
