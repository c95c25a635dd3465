"""What a new user installs: the wheel (not the source tree), in a fresh virtualenv, runs the demo."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bk_notebook as bk

from helpers import ROOT

pytestmark = pytest.mark.slow



def test_version_and_license_are_declared_once_and_agree() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()  # read as text: tomllib is Python 3.11+
    assert re.search(r'^version = "([^"]+)"$', pyproject, re.M)[1] == bk.__version__  # type: ignore[index]
    assert re.search(r'^license = "MIT"$', pyproject, re.M)
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert f"## {bk.__version__} " in (ROOT / "CHANGELOG.md").read_text()


def test_the_wheel_installed_in_a_fresh_venv_runs_the_demo(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BK_TOKEN", "BK_STT_URL", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
                   check=True, env=env, timeout=300)
    [wheel] = (tmp_path / "dist").glob("bk_notebook-*.whl")
    assert wheel.name.startswith(f"bk_notebook-{bk.__version__}-")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[server]"],
                   check=True, env=env, timeout=600)
    outside = tmp_path / "elsewhere"  # not the repository: only the installed files can be imported
    outside.mkdir()
    where = subprocess.run([str(python), "-c", "import bk_notebook; print(bk_notebook.__file__)"], cwd=outside,
                           capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert where.startswith(str(venv)), where
    demo = subprocess.run([str(venv / "bin" / "bk-notebook"), "demo", "--speed", "max"], cwd=outside,
                          capture_output=True, text=True, env=env, timeout=300)
    assert demo.returncode == 0, demo.stderr
    header, *rows = demo.stdout.splitlines()
    assert header.split() == ["file", "segment", "start", "end", "text"] and len(rows) >= 2
    # The bundled sample and a real recogniser: [server] alone is PocketSphinx, about 0.27 on the sample.
    assert "(engine pocketsphinx)" in demo.stderr
    heard = " ".join(row.split(maxsplit=4)[4] for row in rows)
    assert bk.evaluate([heard], [bk.sample_text()]).attrs["corpus"]["wer"] <= 0.4, heard
    widgets = subprocess.run([str(python), "-c", "import importlib.resources as r; "
                              "print(sorted(p.name for p in (r.files('bk_notebook') / 'widgets').iterdir()))"],
                             cwd=outside, capture_output=True, text=True, env=env, check=True).stdout
    for name in ("microphone.js", "microphone.css", "player.js", "player.css"):
        assert name in widgets
