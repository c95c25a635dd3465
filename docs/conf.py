"""Sphinx configuration of the bk_notebook site.

The build needs no network and never starts a kernel: the notebooks are rendered from the
outputs committed in ``../notebooks`` (``docs/notebooks/*.ipynb`` are symlinks to them), and no
intersphinx inventory is fetched.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package from this checkout, installed or not

import bk_notebook  # noqa: E402

project = "bk_notebook"
author = "bk_notebook developers"
copyright = "bk_notebook developers"
release = version = bk_notebook.__version__

extensions = [
    "myst_nb",  # MyST Markdown pages and the notebooks (it loads myst_parser itself)
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the docstrings are numpy style
    "sphinxarg.ext",  # the CLI, from bk_notebook.cli:_parser
]

exclude_patterns = ["_build", "_readme_short.md", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# Every cross-reference must resolve (with -W a broken one fails the build).
nitpicky = True
nitpick_ignore_regex = [
    # Annotations that name types outside this package: no inventory is fetched for them.
    (r"py:.*", r"(numpy|np|pandas|pd|asyncio|ssl|os|pathlib|collections|typing|datasets|dask|distributed|enum|"
               r"ipywidgets|traitlets|anywidget|matplotlib|concurrent|logging|argparse|types)(\..*)?"),
    (r"py:.*", r"(Any|Path|PathLike|SSLContext|Iterator|AsyncIterator|Iterable|Callable|Sequence|Mapping|"
               r"Awaitable|Coroutine|Literal|TypeAlias|Self|ndarray|DataFrame|Dataset|Axes|Figure|"
               r"TracebackType|Logger|Future|Task|AbstractEventLoop|ArrayLike|NDArray|BaseException|Exception|"
               r"Enum|Protocol|Union|Optional|Widget|DOMWidget|AnyWidget|Output|Box|VBox|HBox)"),
    # The numpy docstrings' plain-words types ("iterable", "sequence of str", {"wav", "flac"}).
    (r"py:class", r"(optional|default.*|callable|iterable|sequence|folder|widget|array_like|array-like|"
                  r"path|path-like|file-like|bytes-like|.*[\"{}].*)"),
    # Internals that the public docstrings name but the site does not document.
    (r"py:.*", r"bk_notebook\.(plot|batch\.cluster|audio\.capture|audio\.devices|audio\.convert\.PcmSource|"
               r"audio\.soundcard\.LiveChunks|protocol\._.*)(\..*)?"),
    (r"py:.*", r"(PcmSource|encode_audio|The audio as sent to the browser)"),
]

# No network: intersphinx is not loaded, so no inventory is ever fetched.

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_mock_imports: list[str] = []
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes" sections as fields: no second entry beside the properties

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

nb_execution_mode = "off"  # render the committed outputs; the build never starts a kernel
# The notebooks' saved widget state is drawn by ipywidgets' HTML manager, shipped with the site
# (tools/widget_js.py copied it from npm): a page loads no script from a CDN.
nb_ipywidgets_js = {"widgets/embed.js": {}}

html_theme = "furo"
html_title = f"bk_notebook {release}"
html_static_path = ["_static"]  # transcriber.webm, the home page's recording (tools/make_pictures.py); widgets/


def _resolve_short_names(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a docstring's bare name (``Normaliser``, ``finals``) to the one documented object it names.

    The numpy docstrings name their neighbours briefly, as a reader would; Sphinx looks them up only
    in the module the object is documented under (``bk_notebook``), not where it is defined.  One
    match links; none or several leave the warning, so ``-W`` still catches a name that is wrong.
    """
    from sphinx.util.nodes import make_refnode

    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    objects = env.get_domain("py").objects
    owner = ".".join(part for part in (node.get("py:module"), node.get("py:class")) if part)
    if owner and f"{owner}.{target}" in objects:
        matches = [f"{owner}.{target}"]
    elif owner in objects and _lists_attribute(owner, target):
        matches = [owner]  # an instance attribute of the "Attributes" section: link to the class that lists it
    else:
        matches = sorted({name for name, obj in objects.items() if name.endswith("." + target) and not obj.aliased})
    if len(matches) != 1:
        return None
    entry = objects[matches[0]]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, matches[0])


def _lists_attribute(owner: str, attribute: str) -> bool:
    """Whether the class ``owner`` names ``attribute`` in its docstring's "Attributes" section."""
    import importlib
    import re

    module, _, name = owner.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return False
    doc = cls.__doc__ or ""
    section = doc.partition("Attributes\n")[2]
    return re.search(rf"^\s*{re.escape(attribute)} :", section, re.M) is not None


def setup(app: Any) -> dict[str, Any]:
    app.connect("missing-reference", _resolve_short_names)
    return {"parallel_read_safe": True}
