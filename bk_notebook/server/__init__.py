"""The local bahasakita-compatible server and its engines."""

from __future__ import annotations

from .app import BkServer, ServerConfig
from .engines import EnergyEngine, Engine, PocketSphinxEngine, engine_factory
from .local import LocalServer, local_server

__all__ = [
    "BkServer",
    "Engine",
    "EnergyEngine",
    "LocalServer",
    "PocketSphinxEngine",
    "ServerConfig",
    "WhisperEngine",
    "engine_factory",
    "local_server",
]


def __getattr__(name: str) -> object:
    """``WhisperEngine`` on first use: its module (the model registry) costs 15 ms at ``import bk_notebook``."""
    if name == "WhisperEngine":
        from .engines.whisper import WhisperEngine

        return WhisperEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
