"""Recognisers for the local server, behind one small interface, and the table that names them.

One module per engine (``energy``, ``sphinx``, ``whisper``), the interface
they share (``base``), Whisper's weights (``weights``), the model its sessions
share and the decoder that batches their windows (``decoder``, ``packing``),
one table of engines (``table``: :data:`~bk_notebook.server.engines.table.ENGINES`)
that the server, ``local_server``, the CLI and the Dask workers read, and what
each engine can transcribe (``languages``).  See :class:`Engine` for the interface.
"""

from __future__ import annotations

from .base import Engine, EngineEvent
from .energy import EnergyEngine
from .sphinx import PocketSphinxEngine
from .table import ENGINES, EngineSpec, built_engine, chosen_engine, engine_factory, resolve_engine

__all__ = [
    "ENGINES", "EnergyEngine", "Engine", "EngineEvent", "EngineSpec", "PocketSphinxEngine", "built_engine",
    "chosen_engine", "engine_factory", "resolve_engine",
]
