"""Build the documentation site once per test process, strictly, into a temporary folder.

``tests/project/test_docs.py`` checks what was built; ``tests/e2e/test_docs_site.py`` opens it in Chromium.
Either may run first or alone: whichever asks first builds, the other reuses the result.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import ROOT, require

DOCS = ROOT / "docs"
BUILD_COMMAND = "python -m sphinx -W --keep-going -b html docs docs/_build/html"


@dataclass(frozen=True)
class Site:
    html: Path  # the built site: html/index.html
    returncode: int
    output: str  # stdout and stderr of the build
    seconds: float
    offline: bool  # built in a network namespace of its own: no network at all, loopback included


_built: dict[str, Site] = {}


def require_docs_tools() -> None:
    """Skip locally, fail under CI=true, when the ``docs`` extra is missing."""
    for module in ("sphinx", "myst_nb", "furo", "sphinxarg"):
        require(module, "builds the documentation site: pip install -e '.[docs]'")


def _offline_prefix() -> list[str]:
    """``unshare -n`` where this process may use it (root on Linux): the build then cannot reach any network."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def build_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """The command users run (``BUILD_COMMAND``), into a temporary folder instead of docs/_build."""
    require_docs_tools()
    if "site" not in _built:
        out = tmp_path_factory.mktemp("docs-site") / "html"  # myst-nb writes jupyter_execute/ beside it
        started = time.monotonic()
        offline = _offline_prefix()
        command = [*offline, sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(out)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
        seconds = time.monotonic() - started
        _built["site"] = Site(out, done.returncode, done.stdout + done.stderr, seconds, offline=bool(offline))
    return _built["site"]
