"""audit.dashboards: installed from the top-level `dashboards/` folder (see pyproject's package-dir)."""

# The folder sits at the repository root, so `import dashboards` from a checkout would otherwise succeed
# and shadow the unrelated PyPI package of that name. There is one namespace: `audit`.
if __name__ != "audit.dashboards":
    raise ImportError("this folder is the audit.dashboards package: import audit.dashboards, not dashboards")
