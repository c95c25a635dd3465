"""The local bahasakita-compatible server and its engines."""

from __future__ import annotations

from .app import BkServer, ServerConfig
from .engines import EnergyEngine, Engine, PocketSphinxEngine, engine_factory
from .local import LocalServer, local_server
from .whisper import WhisperEngine

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
