"""How much audio may go out now: a send window kept from the server's answers.

Pure bookkeeping, no I/O (the stream consults it before each chunk).

A server that answers every ``audioStream`` once it has decoded that chunk (a
partial, a final, or an empty 200 acknowledgement) tells the client how far its
recogniser has got.  The client then keeps at most ``limit`` chunks sent but not
yet answered, so an unpaced client is paced by the recogniser itself and the
backlog left at ``audioStop`` is at most one window.

Not every server answers every chunk (some reply only when the partial text
changes), and waiting on one that does not would stall the client.  So the
window starts *unknown*: it holds back at the limit only for a short ``probe``
(0.25 s) at a time.  An empty acknowledgement is the proof of a per-chunk
server (no other server sends one for nothing) and turns the window
*acknowledged*: from then on a full window waits for answers (up to
``patience``: a session passes its ``reply_timeout``, 30 s by default, never less
than 5 s).  A probe or the patience running out, or two windows'
worth of answers without an empty one, turn the window *off* for the rest of
the session: the client falls back to pacing alone, and the drain after
``audioStop`` still protects the result.
"""

from __future__ import annotations

import enum

__all__ = ["SendWindow", "WindowMode"]


class WindowMode(enum.Enum):
    """What the client knows about the server's answers."""

    UNKNOWN = "unknown"  # no empty acknowledgement seen yet: windowed, ready to give up soon
    ACKNOWLEDGED = "acknowledged"  # the server answers every chunk: windowed
    OFF = "off"  # the server does not answer every chunk: pacing alone


class SendWindow:
    """Chunks sent and answered in one session, and whether another may go out.

    Parameters
    ----------
    limit : int or None
        Chunks that may be in flight (sent, not yet answered); ``None`` turns the
        window off from the start.
    probe : float
        Seconds an unproven window waits for an answer before turning off.
    patience : float
        Seconds a proven (acknowledged) window waits for an answer before turning off.
    """

    PATIENCE = 5.0  # the least a proven window waits (a session waits its reply_timeout when longer)

    def __init__(self, limit: int | None, probe: float = 0.25, patience: float = PATIENCE) -> None:
        if limit is not None and limit < 1:
            raise ValueError("the window holds at least one chunk")
        self.limit = limit
        self.probe = probe
        self.patience = patience
        self.mode = WindowMode.OFF if limit is None else WindowMode.UNKNOWN
        self.sent = 0
        self.answered = 0
        # Answers without one empty acknowledgement among them: a server that answers changes only.
        self._unproven_answers = 2 * limit if limit is not None else 0

    @property
    def in_flight(self) -> int:
        """Chunks sent and not answered yet."""
        return max(self.sent - self.answered, 0)

    def may_send(self) -> bool:
        """Whether another chunk may go out now."""
        return self.mode is WindowMode.OFF or self.sent - self.answered < self.limit  # type: ignore[operator]

    def may_resume(self) -> bool:
        """Whether a sender waiting on a full window may go on: half of it answered.

        A low-water mark, so that the sender wakes once per half window instead of once per answer.
        """
        return self.mode is WindowMode.OFF or self.sent - self.answered <= self.limit // 2  # type: ignore[operator]

    @property
    def wait_limit(self) -> float:
        """How long a full window waits for an answer before turning off."""
        return self.patience if self.mode is WindowMode.ACKNOWLEDGED else self.probe

    def on_sent(self, chunks: int = 1) -> None:
        self.sent += chunks

    def on_answers(self, answered: int, empty_acknowledgements: int) -> None:
        """The session's running counts of ``audioStream`` answers, and of empty ones among them."""
        self.answered = answered
        if self.mode is WindowMode.UNKNOWN:
            if empty_acknowledgements:
                self.mode = WindowMode.ACKNOWLEDGED
            elif answered >= self._unproven_answers:
                self.mode = WindowMode.OFF

    def on_stall(self) -> None:
        """A full window got no answer for ``wait_limit`` seconds: pace by ``speed`` alone from now on."""
        self.mode = WindowMode.OFF

    def __repr__(self) -> str:
        return f"SendWindow({self.mode.value}, {self.in_flight}/{self.limit} in flight)"
