"""mmaudit: audit large image-text corpora for harmful content."""

import sys
from pathlib import Path

__version__ = "0.1.0"


def _drop_checkout_root_from_sys_path() -> None:
    """`python -m ...` / `python -c ...` from a checkout puts the repository root on sys.path, where
    kernels/, schemas/, pipelines/ and dashboards/ (the audit.* subpackages) would look like
    top-level packages. transformers probes for PyPI's `kernels` that way and would import ours.
    Editable and wheel installs never need the root on the path, so it is removed."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "kernels" / "__init__.py").is_file():
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != root]


_drop_checkout_root_from_sys_path()
