"""Partial and final events waiting for ``Stream.events()`` readers, in bounded memory.

One queue shared by every iterator of a session (an event goes to whichever
reads it first), bounded at ``limit`` unread events: past that the oldest
partials are dropped first, since every final also stays in the session's
Transcript.  Nothing here touches a socket.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from .protocol import Final, Partial

__all__ = ["EVENT_BACKLOG", "EventBacklog"]

EVENT_BACKLOG = 1000


class EventBacklog:
    """Unread events of one session, and whether more can come."""

    def __init__(self, limit: int = EVENT_BACKLOG) -> None:
        self.limit = limit
        self.dropped = 0
        self._events: deque[Partial | Final] = deque()
        self._changed = asyncio.Event()
        self._ended = False

    def __len__(self) -> int:
        return len(self._events)

    def publish(self, event: Partial | Final) -> None:
        events = self._events
        if len(events) >= self.limit:  # nobody reads: keep memory bounded
            oldest_partial = next((e for e in events if isinstance(e, Partial)), None)
            if oldest_partial is not None:
                events.remove(oldest_partial)
            else:
                events.popleft()
            self.dropped += 1
        events.append(event)
        self._changed.set()

    def end(self) -> None:
        """No more events will come: iterators stop once they have read what is left."""
        self._ended = True
        self._changed.set()

    async def read(self) -> AsyncIterator[Partial | Final]:
        """Yield events as they come, until :meth:`end` and the backlog is empty."""
        while True:
            if self._events:
                yield self._events.popleft()
                continue
            if self._ended:
                return
            self._changed.clear()
            await self._changed.wait()
