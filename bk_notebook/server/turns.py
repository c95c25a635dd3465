"""Fair decoding and admission control for the local server.

Theory of operation
-------------------
**Turns.**  Every engine call (a chunk's ``feed``, a ``flush``) takes a turn
from :class:`DecodeTurns`: at most ``slots`` calls run at once (one per core by
default), the others wait in arrival order.  A session's decoder handles one
message at a time, so a session has at most one call waiting: first come, first
served over the calls is round-robin over the sessions.  A client that queued
five minutes of audio gets one decode, then waits behind everyone else's next
chunk, instead of decoding its whole backlog ahead of them.  (An engine may
have a layer of its own below these: Whisper's sessions share one model, whose
:class:`~bk_notebook.server.engines.decoder.Decoder` batches their windows,
finals first.)

**Admission.**  :class:`Load` measures what decoding costs (engine seconds per
second of audio, averaged over recent calls that ran alone: a call sharing the
cores, or the GIL, with another takes longer than the engine needs) and how
fast each session's audio arrives.  A session whose audio arrives at about real time (at most
``LIVE_RATE`` times it) is *live*: falling behind is what hurts it.  Sessions
faster than that (a file sent unpaced) take whatever turns are left and are not
counted.  ``audioConn`` is refused ("worker not available", which the client
retries with backoff) when one more real-time session would make the live
sessions need more than ``headroom`` of the slots; the first session, and any
session while none is live, is always admitted: there is nobody to protect.  A
session younger than ``WINDOW`` counts as one real-time stream, so a burst of
connections is not all admitted before their audio is measured.

With a shared decoder (Whisper), the cost is the decoder's own measure instead:
one over its throughput (seconds of audio finalised per second of decoding,
batches included), against one slot, the one model.  Costs measured from
engine calls mislead there: the calls that overlap another session's are the
expensive ones, so a cost from calls that ran alone fell 30-100x below the
truth and nobody was ever refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["DecodeTurns", "Load"]


class DecodeTurns:
    """At most ``slots`` engine calls at once; waiting calls are served in arrival order."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.running = 0
        self.granted = 0  # turns given so far: a call that saw no other granted while it ran ran alone
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiting if not f.done())

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for a turn, hold it while the body runs, then hand it to the longest waiter."""
        if self.running < self.slots and not self._waiting:
            self.running += 1
            self.granted += 1
        else:
            ticket = asyncio.get_running_loop().create_future()
            self._waiting.append(ticket)
            try:
                await ticket  # the slot is handed over with the ticket: ``running`` is unchanged
            except asyncio.CancelledError:
                if ticket.done() and not ticket.cancelled():
                    self._hand_over()  # given a turn just as it was cancelled: pass it on
                else:
                    with contextlib.suppress(ValueError):
                        self._waiting.remove(ticket)
                raise
        try:
            yield
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        while self._waiting:
            ticket = self._waiting.popleft()
            if not ticket.done():
                ticket.set_result(None)
                self.granted += 1
                return
        self.running -= 1


@dataclass
class _Arrivals:
    since: float
    recent: deque[tuple[float, float]] = field(default_factory=deque)  # (loop time, seconds of audio)


class Throughput(Protocol):
    """A shared decoder that measures itself (:class:`~bk_notebook.server.engines.decoder.Decoder`)."""

    def throughput(self) -> float | None:
        """Seconds of audio finalised per second of decoding, or None before it is measured."""


class Load:
    """What the live sessions ask of the engines, measured (see the module's docstring).

    Parameters
    ----------
    slots : int
        Engine calls that can run at once (the cores decoding).
    headroom : float
        Share of the slots live sessions may need before new ones are refused.
    decoder : Throughput, optional
        The one decoder the sessions share: once it has measured itself, its throughput is the cost,
        against one slot.
    """

    WINDOW = 5.0  # seconds over which a session's arrival rate is measured
    LIVE_RATE = 1.5  # audio seconds per second: at most this, a session is live
    SMOOTHING = 0.05  # weight of one call in the cost's moving average

    def __init__(self, slots: int, headroom: float = 0.85, decoder: Throughput | None = None) -> None:
        self._slots = slots
        self.headroom = headroom
        self.decoder = decoder
        self._cost: float | None = None  # engine seconds per audio second from engine calls, once measured
        self._sessions: dict[object, _Arrivals] = {}

    @property
    def cost(self) -> float | None:
        """Decoding seconds per audio second: the shared decoder's measure if there is one, else the calls'."""
        if self.decoder is not None:
            throughput = self.decoder.throughput()
            if throughput is not None:
                return 1.0 / throughput
        return self._cost

    @property
    def slots(self) -> int:
        """What can decode at once: one shared decoder once it measures itself, else the cores."""
        return 1 if self.decoder is not None and self.decoder.throughput() is not None else self._slots

    def opened(self, session: object, now: float) -> None:
        self._sessions[session] = _Arrivals(since=now)

    def closed(self, session: object) -> None:
        self._sessions.pop(session, None)

    def arrived(self, session: object, seconds: float, now: float) -> None:
        """``seconds`` of a session's audio arrived at ``now``."""
        arrivals = self._sessions.get(session)
        if arrivals is not None:
            arrivals.recent.append((now, seconds))
            while arrivals.recent and arrivals.recent[0][0] < now - self.WINDOW:
                arrivals.recent.popleft()

    def decoded(self, seconds: float, busy: float) -> None:
        """An engine call decoded ``seconds`` of audio in ``busy`` seconds."""
        if seconds < 0.05:
            return  # a flush or a tiny chunk says little about the rate
        sample = busy / seconds
        self._cost = sample if self._cost is None else self._cost + self.SMOOTHING * (sample - self._cost)

    def rate(self, session: object, now: float) -> float:
        """Audio seconds per second this session sent recently; a young session counts as real time."""
        arrivals = self._sessions[session]
        heard = sum(s for t, s in arrivals.recent if t >= now - self.WINDOW)
        age = now - arrivals.since
        return max(1.0, heard / max(age, 0.1)) if age < self.WINDOW else heard / self.WINDOW

    def live_demand(self, now: float) -> float:
        """Slots the live sessions need (their audio rate times the cost of decoding it)."""
        cost = self.cost
        if cost is None:
            return 0.0
        rates = [self.rate(s, now) for s in self._sessions]
        return sum(r for r in rates if 0 < r <= self.LIVE_RATE) * cost

    def admits(self, now: float) -> bool:
        """Whether one more real-time session can be decoded beside the live ones without them falling behind."""
        cost = self.cost
        demand = self.live_demand(now)
        if cost is None or demand == 0.0:
            return True
        return demand + cost <= self.slots * self.headroom
