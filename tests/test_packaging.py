"""The wheel installs the one `audit` namespace; no top-level kernels/schemas/pipelines/dashboards."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("kernels", "schemas", "pipelines", "dashboards")


@pytest.mark.slow
def test_wheel_installs_the_audit_namespace_into_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = dist.glob("mmaudit-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300
    )
    # The dependencies come from this venv's site-packages, appended *after* the fresh venv's own,
    # so `audit` can only be the wheel's copy.
    site = Path(
        subprocess.check_output(
            [py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True
        ).strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    check = "\n".join(
        [
            "import importlib, importlib.resources as r",
            "import audit, audit.schemas, audit.kernels, audit.pipelines, audit.dashboards, audit.cli",
            f"assert audit.__file__.startswith({str(site)!r}), audit.__file__",
            "assert r.files('audit.pipelines').joinpath('rules', 'default.yaml').is_file()",
            f"for name in {SUBPACKAGES!r}:",
            "    try:",
            "        importlib.import_module(name)",
            "    except ImportError:",
            "        continue",
            "    raise SystemExit('top-level ' + name + ' is importable')",
        ]
    )
    result = subprocess.run([py, "-c", check], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    help_text = subprocess.run(
        [venv / "bin" / "mmaudit", "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    assert "audit" in help_text


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_top_level_import_fails_even_from_the_repository_root(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode != 0
    assert f"import audit.{name}, not {name}" in result.stderr or "No module named" in result.stderr
