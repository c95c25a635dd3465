"""``CaptureCallbacks``: the callback registry every live source shares.

The Transcriber drives any live source, the browser's :class:`Microphone` or
the kernel's :class:`SoundCard`, through the same three registrations; each
source decides on which thread and how it calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["CaptureCallbacks"]


class CaptureCallbacks:
    """``on_chunk``, ``on_stop`` and ``on_error`` for a live audio source."""

    def _init_callbacks(self) -> None:
        self._chunk_callbacks: list[Callable[[bytes], Any]] = []
        self._stop_callbacks: list[Callable[[], Any]] = []
        self._error_callbacks: list[Callable[[str], Any]] = []

    def on_chunk(self, callback: Callable[[bytes], Any]) -> None:
        """Call ``callback(pcm_bytes)`` for every 3200-byte chunk (the last may be shorter)."""
        self._chunk_callbacks.append(callback)

    def on_stop(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once the capture has stopped and its last chunk was delivered."""
        self._stop_callbacks.append(callback)

    def on_error(self, callback: Callable[[str], Any]) -> None:
        """Call ``callback(message)`` when the source fails (no permission, a device gone)."""
        self._error_callbacks.append(callback)

    def _clear_callbacks(self) -> None:
        """Forget every registered callback (on close: they may hold a session, a widget, a kernel's loop)."""
        self._chunk_callbacks.clear()
        self._stop_callbacks.clear()
        self._error_callbacks.clear()
