"""``CaptureCallbacks``, the callback registry every live source shares, and ``DropOldest``, its backlog.

The Transcriber drives any live source, the browser's :class:`Microphone` or
the kernel's :class:`SoundCard`, through the same three registrations; each
source decides on which thread and how it calls them.  Live audio that waits
for a slow consumer waits in a :class:`DropOldest` queue: bounded, the oldest
dropped (and counted) first.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import Callable
from typing import Any

__all__ = ["AsyncDropOldest", "CaptureCallbacks", "DropOldest", "ThreadDropOldest"]


class CaptureCallbacks:
    """``on_chunk``, ``on_stop`` and ``on_error`` for a live audio source.

    The source fires them with :meth:`_fire_chunk`, :meth:`_fire_stop` and
    :meth:`_fire_error`; each callback is called through :meth:`_call_callback`
    (directly, unless the source guards its thread against a consumer's error).
    """

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

    def remove_callback(self, callback: Callable[..., Any]) -> None:
        """Forget one registration of ``callback`` (by ``on_chunk``, ``on_stop`` or ``on_error``), if any."""
        for callbacks in (self._chunk_callbacks, self._stop_callbacks, self._error_callbacks):
            with contextlib.suppress(ValueError):
                callbacks.remove(callback)  # type: ignore[arg-type]

    def _clear_callbacks(self) -> None:
        """Forget every registered callback (on close: they may hold a session, a widget, a kernel's loop)."""
        self._chunk_callbacks.clear()
        self._stop_callbacks.clear()
        self._error_callbacks.clear()

    # ------------------------------------------------------------- for the source
    def _call_callback(self, callback: Callable[..., Any], *args: Any) -> None:
        callback(*args)

    def _fire(self, callbacks: list[Callable[..., Any]], *args: Any) -> None:
        for callback in list(callbacks):  # a callback may unsubscribe itself
            self._call_callback(callback, *args)

    def _fire_chunk(self, chunk: bytes) -> None:
        self._fire(self._chunk_callbacks, chunk)

    def _fire_stop(self) -> None:
        self._fire(self._stop_callbacks)

    def _fire_error(self, message: str) -> None:
        self._fire(self._error_callbacks, message)


class DropOldest:
    """A FIFO of live audio that holds at most ``limit`` items: :meth:`push` drops the oldest first.

    Mixed into a queue class (``queue.Queue`` for a consumer thread, ``asyncio.Queue``
    for a consumer on an event loop); the consumer uses the queue's own ``get``.
    ``on_drop(item)`` is called for each item dropped, so the caller can count the
    audio lost.  ``put_nowait`` stays unbounded: for the end-of-audio marker, which
    must never be dropped.
    """

    def __init__(self, limit: int, on_drop: Callable[[Any], Any] | None = None) -> None:
        super().__init__()
        self.limit = max(1, int(limit))
        self.on_drop = on_drop

    def push(self, item: Any) -> None:
        """Append ``item``, first dropping the oldest items while ``limit`` are waiting."""
        while self.qsize() >= self.limit:  # type: ignore[attr-defined]
            try:
                dropped = self.get_nowait()  # type: ignore[attr-defined]
            except (queue.Empty, asyncio.QueueEmpty):  # a consumer thread took it meanwhile
                break
            if self.on_drop is not None:
                self.on_drop(dropped)
        self.put_nowait(item)  # type: ignore[attr-defined]


class AsyncDropOldest(DropOldest, asyncio.Queue):  # type: ignore[type-arg]
    """:class:`DropOldest` awaited on an event loop (push from the loop's thread only)."""


class ThreadDropOldest(DropOldest, queue.Queue):  # type: ignore[type-arg]
    """:class:`DropOldest` read by a thread (push from any thread)."""
