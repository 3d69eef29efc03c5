"""audit.kernels: installed from the top-level `kernels/` folder (see pyproject's package-dir)."""

# The folder sits at the repository root, so `import kernels` from a checkout would otherwise succeed
# and shadow the unrelated PyPI package of that name. There is one namespace: `audit`.
if __name__ != "audit.kernels":
    raise ImportError("this folder is the audit.kernels package: import audit.kernels, not kernels")
