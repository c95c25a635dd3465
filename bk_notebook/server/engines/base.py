"""What the server needs of a recogniser: the engine interface.

An engine serves one session at a time and is reused for the next one (a
PocketSphinx decoder costs ~0.3 s and ~135 MB to build).  ``feed`` takes raw
16 kHz int16 PCM of any length and returns the protocol's own ``Partial`` and
``Final`` events, with ``Final.start``/``end`` in seconds of the session's
audio; ``flush`` ends the stream and returns what is left.  Engines are
blocking code: the server calls them from worker threads, never on its loop.
"""

from __future__ import annotations

from typing import Protocol, Union

from ...protocol import Final, Partial

__all__ = ["Engine", "EngineEvent"]

EngineEvent = Union[Partial, Final]


class Engine(Protocol):
    """What the server needs of a recogniser."""

    def reset(self) -> None:
        """Forget the previous session; times restart at 0."""

    def feed(self, pcm: bytes) -> list[EngineEvent]:
        """Take more PCM; return partials (only when they change) and finals."""

    def flush(self) -> list[EngineEvent]:
        """End of stream: return the last finals."""
