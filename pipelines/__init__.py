"""audit.pipelines: installed from the top-level `pipelines/` folder (see pyproject's package-dir)."""

# The folder sits at the repository root, so `import pipelines` from a checkout would otherwise succeed
# and shadow the unrelated PyPI package of that name. There is one namespace: `audit`.
if __name__ != "audit.pipelines":
    raise ImportError("this folder is the audit.pipelines package: import audit.pipelines, not pipelines")
