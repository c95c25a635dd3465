"""The widget stack, imported once with an install hint when it is missing."""

from __future__ import annotations

from pathlib import Path

from ..errors import missing_extra

try:
    import anywidget
    import ipywidgets
    import traitlets
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise missing_extra("bk_notebook.widgets", "ipywidgets and anywidget", "widgets", exc) from exc

__all__ = ["anywidget", "front_end", "ipywidgets", "traitlets"]

_HERE = Path(__file__).parent


def front_end(name: str) -> str:
    """The text of a widget's ``.js`` or ``.css`` file beside this module, for ``_esm``/``_css``.

    Text, not a ``Path``: anywidget turns a ``Path`` class attribute into one file watcher per class,
    and each instance connects a closure over itself to it, so no widget was ever freed (a closed
    one-hour Player kept ~205 MB).  Text keeps nothing.
    """
    return (_HERE / name).read_text(encoding="utf-8")
