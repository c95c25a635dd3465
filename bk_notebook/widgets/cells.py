"""Widgets and notebook cells: which cell is running, and closing what an earlier run of it made.

A front end (JupyterLab, Notebook 7, nbclient) sends the cell's id with each
execution request.  A widget that registers itself with :func:`replace_earlier`
is closed when the same cell runs again and registers a new one: re-running a
cell replaces its widget instead of stacking another live one beside it.
Widgets made by one run of a cell are siblings and stay.
"""

from __future__ import annotations

import weakref
from typing import Any

from ._deps import ipywidgets as w

__all__ = ["current_cell", "descendants", "replace_earlier"]

_by_cell: dict[str, list[tuple[str, weakref.ref[Any]]]] = {}  # cell id -> (request id, widget)


def current_cell() -> tuple[str, str] | None:
    """``(cell id, execution request id)`` of the notebook cell running now, when a front end says."""
    try:
        from IPython import get_ipython

        parent = get_ipython().kernel.get_parent("shell")  # type: ignore[union-attr]
        cell_id = (parent.get("metadata") or {}).get("cellId")
        return (str(cell_id), str(parent["header"]["msg_id"])) if cell_id else None
    except Exception:  # noqa: BLE001 - not in a kernel, or a front end that sends no cell id
        return None


def replace_earlier(widget: Any, cell: tuple[str, str] | None) -> None:
    """Register ``widget`` as made by ``cell``; close what earlier runs of that cell made."""
    if cell is None:
        return
    cell_id, request = cell
    kept = []
    for made_by, ref in _by_cell.pop(cell_id, []):
        earlier = ref()
        if earlier is None:
            continue
        if made_by == request:
            kept.append((made_by, ref))
        else:
            earlier.close()
    _by_cell[cell_id] = [*kept, (request, weakref.ref(widget))]


def descendants(widget: Any) -> list[Any]:
    """``widget`` and every widget it holds (children, layouts, styles), each once."""
    seen: dict[int, Any] = {}

    def walk(item: Any) -> None:
        if id(item) in seen or not isinstance(item, w.Widget):
            return
        seen[id(item)] = item
        for value in item.trait_values().values():
            for child in value if isinstance(value, (list, tuple)) else (value,):
                walk(child)

    walk(widget)
    return list(reversed(seen.values()))
