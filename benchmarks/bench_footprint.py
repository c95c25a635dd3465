"""Install footprint: site-packages size and distribution count of fresh virtualenvs.

    python -m benchmarks.bench_footprint

Three venvs, made in a temporary folder with this Python: the core install (``pip install -e .``),
the core plus librosa (what the core was before librosa moved to the ``notebooks`` extra), and
``[all]``.  Sizes are ``du --apparent-size`` style sums of file sizes in site-packages, minus an
empty venv's (pip and setuptools), and the counts leave out pip, setuptools and bk-notebook itself.
Needs the package index (or its mirror) that pip is configured with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, save

BASE = {"pip", "setuptools", "bk-notebook", "bk_notebook"}


def site_packages(venv: Path) -> Path:
    out = subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out)


def measure(venv: Path) -> tuple[int, list[str]]:
    folder = site_packages(venv)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
    freeze = subprocess.run([venv / "bin" / "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            check=True).stdout.split()
    names = [line.split("==")[0] for line in freeze]
    return size, [n for n in names if n.lower() not in BASE]


def venv(where: Path, name: str, *install: str) -> tuple[int, list[str]]:
    path = where / name
    subprocess.run([sys.executable, "-m", "venv", path], check=True)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for spec in install:
        subprocess.run([path / "bin" / "pip", "install", "-q", *spec.split()], check=True, env=env)
    return measure(path)


def main() -> None:
    mb = 1e6
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        empty, _ = venv(where, "empty")
        core, core_names = venv(where, "core", f"-e {ROOT}")
        old, old_names = venv(where, "old", f"-e {ROOT}", "librosa>=0.10")
        everything, all_names = venv(where, "all", f"-e {ROOT}[all]")
    result = {
        "core_mb": round((core - empty) / mb), "core_distributions": len(core_names),
        "core_with_librosa_mb": round((old - empty) / mb), "core_with_librosa_distributions": len(old_names),
        "all_mb": round((everything - empty) / mb), "all_distributions": len(all_names),
        "core_names": sorted(core_names),
        "python": sys.version.split()[0],
    }
    print(json.dumps(result))
    save("footprint", result)


if __name__ == "__main__":
    main()
