"""Partial and final events waiting for ``Stream.events()`` readers, in bounded memory.

One queue shared by every iterator of a session (an event goes to whichever
reads it first), bounded at ``limit`` unread events and ``byte_limit`` bytes of
their text: past either, the oldest partials are dropped first, since every
final also stays in the session's Transcript.  Counting bytes matters because a
server may send long partials: 1,100 unread partials of 1 MB each held 765 MB
when only their number was bounded.  Nothing here touches a socket.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from ..protocol import Final, Partial

__all__ = ["EVENT_BACKLOG", "EVENT_BACKLOG_BYTES", "EventBacklog"]

EVENT_BACKLOG = 1000
EVENT_BACKLOG_BYTES = 8 * 2**20  # of event text; the newest event is always kept, however long
_EVENT_OVERHEAD = 100  # bytes an event costs beyond its text (the object, its fields)


def _size(event: Partial | Final) -> int:
    return len(event.text) + _EVENT_OVERHEAD  # characters: close enough to bytes, and O(1)


class EventBacklog:
    """Unread events of one session, and whether more can come."""

    def __init__(self, limit: int = EVENT_BACKLOG, byte_limit: int = EVENT_BACKLOG_BYTES) -> None:
        self.limit = limit
        self.byte_limit = byte_limit
        self.dropped = 0
        self.bytes = 0  # the unread events' size, as counted against byte_limit
        self._events: deque[Partial | Final] = deque()
        self._changed = asyncio.Event()
        self._ended = False

    def __len__(self) -> int:
        return len(self._events)

    def publish(self, event: Partial | Final) -> None:
        events = self._events
        size = _size(event)
        while events and (len(events) >= self.limit or self.bytes + size > self.byte_limit):  # nobody reads
            oldest_partial = next((e for e in events if isinstance(e, Partial)), None)
            dropped = oldest_partial if oldest_partial is not None else events[0]
            events.remove(dropped)
            self.bytes -= _size(dropped)
            self.dropped += 1
        events.append(event)
        self.bytes += size
        self._changed.set()

    def end(self) -> None:
        """No more events will come: iterators stop once they have read what is left."""
        self._ended = True
        self._changed.set()

    async def read(self) -> AsyncIterator[Partial | Final]:
        """Yield events as they come, until :meth:`end` and the backlog is empty."""
        while True:
            if self._events:
                event = self._events.popleft()
                self.bytes -= _size(event)
                yield event
                continue
            if self._ended:
                return
            self._changed.clear()
            await self._changed.wait()
