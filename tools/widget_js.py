"""Copy ipywidgets' HTML manager into the site, so notebook pages draw their saved widgets offline.

Usage (from the repository root; needs ``npm``, which fetches one package from the npm registry)::

    python -m tools.widget_js    # writes docs/_static/widgets/

The notebooks are committed with the state of their widgets (``tools/execute_notebooks.py``), and
myst-nb writes it into each notebook page. ``@jupyter-widgets/html-manager``'s ``dist/embed.js`` (one
file, with the ``base``, ``controls`` and ``output`` widgets bundled, no require.js) finds that state
when the page loads and draws the views. The site ships it in ``_static`` (``nb_ipywidgets_js`` in
``docs/conf.py``): a page never fetches a script from a CDN. The files are committed, so building the
site needs neither npm nor a network; run this again only to move to another version (it must match
the ``@jupyter-widgets/controls`` version that the pinned ipywidgets writes in its state).

``npm pack`` fetches the package's tarball alone (none of its dependencies: ``dist/`` is bundled), and
the tarball must match the pinned integrity. ``MANIFEST`` records each copied file's SHA-256;
``tests/project/test_notebooks.py`` checks the committed files against it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "_static" / "widgets"
PACKAGE = "@jupyter-widgets/html-manager"
VERSION = "1.0.15"  # bundles @jupyter-widgets/controls 5 (the state ipywidgets 8 writes: model version 2.0.0)
INTEGRITY = ("sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==")
# embed.js, the licences of what it bundles, and Font Awesome's woff2 fonts (the one format browsers
# take first from its @font-face rules; the others would only add weight).
WANTED = ("embed.js", "embed.js.LICENSE.txt")
WANTED_SUFFIX = ".woff2"
MANIFEST = "MANIFEST"
README = f"""\
ipywidgets' HTML manager, {PACKAGE} {VERSION} (BSD-3-Clause, Project Jupyter), dist/ from the npm
package, copied by `python -m tools.widget_js`: do not edit. embed.js.LICENSE.txt lists the licences
of the code it bundles; the .woff2 files are Font Awesome Free's fonts (SIL OFL 1.1). It draws the
saved widget state of the notebook pages (docs/conf.py: nb_ipywidgets_js).
"""


def sha512_integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def manifest_lines(folder: Path) -> list[str]:
    """``<sha256>  <name>`` for every file of ``folder`` but the manifest, by name."""
    return [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}"
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST]


def fetch(target: Path = TARGET) -> list[str]:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed (apt-get install npm): it fetches the package from the npm registry")
    with tempfile.TemporaryDirectory(prefix="bk-widget-js-") as scratch:
        done = subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--json"], cwd=scratch, check=True,
                              capture_output=True, text=True)
        tarball = Path(scratch) / json.loads(done.stdout)[0]["filename"]
        if sha512_integrity(tarball.read_bytes()) != INTEGRITY:
            raise SystemExit(f"{tarball.name} does not match the pinned integrity: not copied")
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                name = member.name.removeprefix("package/dist/")
                if member.isfile() and "/" not in name and (name in WANTED or name.endswith(WANTED_SUFFIX)):
                    source = archive.extractfile(member)
                    assert source is not None
                    (target / name).write_bytes(source.read())
    (target / "README").write_text(README)
    lines = manifest_lines(target)
    (target / MANIFEST).write_text("\n".join(lines) + "\n")
    return lines


def main() -> int:
    for line in fetch():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
