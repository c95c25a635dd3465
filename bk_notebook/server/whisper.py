"""Moved to :mod:`bk_notebook.server.engines.whisper`; kept so that imports of the old layout go on working."""

from __future__ import annotations

from .engines.whisper import StreamingVad, WhisperEngine

__all__ = ["StreamingVad", "WhisperEngine"]
