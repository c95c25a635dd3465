"""The widget stack, imported once with an install hint when it is missing."""

from __future__ import annotations

from ..errors import MissingDependency

try:
    import anywidget
    import ipywidgets
    import traitlets
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency(
        f"bk_notebook.widgets needs ipywidgets and anywidget ({exc.name} is missing): "
        "pip install 'bk-notebook[widgets]'"
    ) from exc

__all__ = ["anywidget", "ipywidgets", "traitlets"]
