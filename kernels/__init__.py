"""audit.kernels: installed from the top-level `kernels/` folder (see pyproject's package-dir)."""

# The folder sits at the repository root, so `import kernels` from a checkout would otherwise succeed
# and shadow the unrelated PyPI package of that name. There is one namespace: `audit`.
if __name__ != "audit.kernels":
    raise ImportError("this folder is the audit.kernels package: import audit.kernels, not kernels")


def _numba_cache_dir() -> None:
    """Compiled kernels are cached on disk (``cache=True``) under mmaudit's cache folder, so a new
    worker loads them instead of compiling (seconds per kernel); NUMBA_CACHE_DIR still wins."""
    import os
    import sys

    from audit.cache_dir import numba_cache_dir

    path = numba_cache_dir()
    os.environ.setdefault("NUMBA_CACHE_DIR", path)
    if "numba" in sys.modules:  # already imported: its config read the environment before this
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]


_numba_cache_dir()
