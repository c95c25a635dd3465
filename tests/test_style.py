"""The code style is enforced, not hoped for: ruff (numpy docstrings) over the package and tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import require

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    require("ruff", "the style check")
    paths = ["bk_notebook", "tests", "benchmarks", "tools", "docs/conf.py"]  # not docs/: its notebooks are ../notebooks
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *paths], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    require("mypy", "the type check")
    result = subprocess.run([sys.executable, "-m", "mypy", "bk_notebook"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
