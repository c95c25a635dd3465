"""The code style is enforced, not hoped for: ruff (numpy docstrings) over the package and tests."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT, require


def test_ruff_is_clean() -> None:
    require("ruff", "the style check")
    paths = ["bk_notebook", "tests", "benchmarks", "tools", "docs/conf.py"]  # not docs/: its notebooks are ../notebooks
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *paths], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    require("mypy", "the type check")
    result = subprocess.run([sys.executable, "-m", "mypy", "bk_notebook"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_missing_extra_error_comes_from_one_helper_and_names_a_real_extra() -> None:
    import ast
    import re

    extras = set(re.findall(r"^([a-z]+) = \[", (ROOT / "pyproject.toml").read_text().split(
        "[project.optional-dependencies]")[1].split("\n[")[0], re.M))
    named = []
    for path in sorted((ROOT / "bk_notebook").rglob("*.py")):
        text = path.read_text()
        if path.name != "errors.py":  # the helper builds the only "pip install 'bk-notebook[...]'" line
            assert "pip install 'bk-notebook[" not in text.replace("``pip install 'bk-notebook[", ""), path
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "missing_extra":
                named.append((path.name, ast.literal_eval(node.args[2])))
    assert len(named) >= 8
    assert all(extra in extras for _, extra in named), (named, extras)
