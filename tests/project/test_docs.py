"""The documentation site: it builds strictly, documents every public name, and has no broken link.

The build is the command a contributor runs (``python -m sphinx -W --keep-going ...``), into a
temporary folder. The short README that replaces README.md (``docs/_readme_short.md``) is held to
the README's own rules: its Python runs as written, its links resolve.
"""

from __future__ import annotations

import html.parser
import json
import re
import urllib.parse
from pathlib import Path

import pytest

import bk_notebook

from helpers import require
from project.docs_site import DOCS, ROOT, Site, build_site

pytestmark = pytest.mark.slow

# The short README waits in docs/ until it replaces README.md; then these tests hold README.md to it.
SHORT_README = DOCS / "_readme_short.md" if (DOCS / "_readme_short.md").exists() else ROOT / "README.md"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return build_site(tmp_path_factory)


def test_the_strict_build_passes_with_no_warning(site: Site) -> None:
    assert site.returncode == 0, site.output[-4000:]
    assert "WARNING" not in site.output and "ERROR" not in site.output, site.output[-4000:]
    assert (site.html / "index.html").is_file()


def _inventory(site: Site) -> dict[str, dict[str, object]]:
    from sphinx.util.inventory import InventoryFile

    with open(site.html / "objects.inv", "rb") as stream:
        inventory = InventoryFile.load(stream, "", lambda base, uri: uri)
    # Sphinx 8.2+ returns an _Inventory object; older ones a plain dict of dicts.
    data = getattr(inventory, "data", inventory)
    return {kind: dict(entries) for kind, entries in data.items()}


def test_every_public_name_has_a_reference_entry(site: Site) -> None:
    inventory = _inventory(site)
    documented = {name for kind, entries in inventory.items() if kind.startswith("py:") for name in entries}
    missing = [name for name in bk_notebook.__all__ if f"bk_notebook.{name}" not in documented]
    assert not missing, f"no reference entry for bk_notebook.{missing}"
    from bk_notebook import widgets

    others = [f"bk_notebook.widgets.{name}" for name in widgets.__all__] + [
        "bk_notebook.LocalServer.stop", "bk_notebook.LocalServer.url",
        "bk_notebook.server.ServerConfig", "bk_notebook.server.engines.Engine",
        "bk_notebook.server.engines.Engine.feed", "bk_notebook.server.engines.Engine.flush",
        "bk_notebook.server.engines.Engine.reset", "bk_notebook.protocol.Final", "bk_notebook.protocol.Partial",
    ]
    assert not [name for name in others if name not in documented]


def test_the_cli_reference_is_generated_from_the_parser(site: Site) -> None:
    from bk_notebook.cli import _parser

    page = (site.html / "reference" / "cli.html").read_text()
    commands = next(a for a in _parser()._actions if a.choices and isinstance(a.choices, dict)).choices
    assert set(commands) >= {"serve", "transcribe", "listen", "demo", "token"}
    for name, sub in commands.items():
        assert name in page
        for action in sub._actions:
            if action.help != "==SUPPRESS==" and action.dest != "help":
                assert all(option in page for option in action.option_strings), (name, action.option_strings)


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)
            linked = (key == "href" and tag in ("a", "link")) or (key == "src" and tag in ("img", "script"))
            if linked and value is not None:
                self.links.append(value)


def test_every_internal_link_resolves(site: Site) -> None:
    pages: dict[Path, _Links] = {}
    for page in site.html.rglob("*.html"):
        parsed = _Links()
        parsed.feed(page.read_text(encoding="utf-8"))
        pages[page.resolve()] = parsed
    assert len(pages) > 30
    broken = []
    for page, parsed in pages.items():
        for link in parsed.links:
            parts = urllib.parse.urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:")):
                continue  # external: not this site's business, and never fetched
            target = (page.parent / urllib.parse.unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site.html.resolve())}: {link}")
            elif parts.fragment and target.suffix == ".html" and target in pages \
                    and urllib.parse.unquote(parts.fragment) not in pages[target].ids:
                broken.append(f"{page.relative_to(site.html.resolve())}: {link} (no such anchor)")
    assert not broken, "\n".join(broken[:40])


def test_each_notebook_is_rendered_from_its_committed_outputs(site: Site) -> None:
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert len(notebooks) == 8
    for notebook in notebooks:
        assert (DOCS / "notebooks" / notebook.name).resolve() == notebook.resolve()  # a link, not a copy
        cells = json.loads(notebook.read_text())["cells"]
        plots = sum("image/png" in out.get("data", {}) for cell in cells for out in cell.get("outputs", []))
        page = (site.html / "notebooks" / f"{notebook.stem}.html").read_text()
        assert page.count('class="cell_output') >= sum(bool(cell.get("outputs")) for cell in cells), notebook.name
        assert len(re.findall(r'<img [^>]*src="[^"]*_images/', page)) >= plots, notebook.name


def test_notebook_pages_carry_their_widget_state_and_load_the_manager_from_the_site(site: Site) -> None:
    drawn = 0
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        saved = json.loads(notebook.read_text())["metadata"].get("widgets")
        page = (site.html / "notebooks" / f"{notebook.stem}.html").read_text()
        scripts = re.findall(r'<script [^>]*src="([^"]+)"', page)
        assert not [src for src in scripts if "://" in src], f"{notebook.name} loads a script from the network"
        if saved is None:
            assert "application/vnd.jupyter.widget-view+json" not in page, notebook.name
            continue
        drawn += 1
        state = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', page, re.S)
        assert state is not None, notebook.name
        assert json.loads(state.group(1))["state"] == saved["application/vnd.jupyter.widget-state+json"]["state"]
        assert "../_static/widgets/embed.js" in [src.partition("?")[0] for src in scripts], scripts
        assert (site.html / "_static" / "widgets" / "embed.js").is_file()
    assert drawn >= 1  # notebook 01's live display at least


def test_the_build_needs_no_network_and_no_kernel(site: Site) -> None:
    if not site.offline:
        pytest.skip("unshare -n is not available to this user: the build ran with the network up")
    assert site.returncode == 0  # it built in a namespace with no network at all
    conf = (DOCS / "conf.py").read_text()
    assert re.search(r'^nb_execution_mode = "off"', conf, re.M)
    assert "sphinx.ext.intersphinx" not in conf


# ------------------------------------------------------------------------------------ the short README
def test_the_short_readme_is_short_and_keeps_the_quick_start() -> None:
    short = SHORT_README.read_text()
    assert len(short.splitlines()) <= 150
    fences = re.compile(r"```bash\n(.*?)```", re.S)
    readme_commands = fences.findall((ROOT / "README.md").read_text())[:2]  # clone-and-venv, then the two commands
    assert readme_commands and all(block in fences.findall(short) for block in readme_commands)


def test_the_short_readme_links_resolve() -> None:
    short = SHORT_README.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", short)
    local = [t for t in targets if not urllib.parse.urlsplit(t).scheme]
    assert len(local) > 20
    # Written for its final place, README.md at the root: resolve its links from there.
    missing = [t for t in local if not (ROOT / urllib.parse.unquote(t.split("#")[0])).exists()]
    assert not missing


def test_the_short_readme_python_runs_as_written_in_a_fresh_kernel(tmp_path: Path) -> None:
    require("nbclient", "runs the README's code in a real kernel")
    import nbformat

    from project.test_notebooks import tool
    from project.test_readme import BLOCK

    blocks = [(m["code"], m["reason"]) for m in BLOCK.finditer(SHORT_README.read_text())]
    run = [code for code, reason in blocks if reason is None]
    assert run and "bk.local_server()" in run[0]
    cells = [nbformat.v4.new_code_cell(code) for code in run]
    cells.append(nbformat.v4.new_code_cell(
        "assert t.complete and t.finals and set(t.finals[0]) >= {'segment', 'text', 'start', 'end'}\n"
        "print('short readme ok', len(t.finals))"))
    path = tmp_path / "readme.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    nb = tool.execute(path, tmp_path, timeout=300)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert "short readme ok" in "".join(o.get("text", "") for o in nb.cells[-1].outputs)
