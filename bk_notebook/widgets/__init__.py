"""Notebook widgets: the live microphone, the transcriber, and other sources."""

from __future__ import annotations

from .microphone import Microphone
from .player import Player
from .sources import from_recorder
from .transcriber import Transcriber

__all__ = ["Microphone", "Player", "Transcriber", "from_recorder"]
