"""A Transcriber run: its states, the one table of steps between them, and what one run holds.

h11 keeps its connection's whole state machine in one table (``h11/_state.py``); this is the
Transcriber's.  A run begins when Start is pressed or a file arrives, and ends when its session
has drained, failed or been abandoned; the Transcriber is then idle again.  Every change of state
goes through :func:`check_step`, so a step the table does not hold is a bug that raises
:class:`~bk_notebook.errors.StateError` where it happens, not a widget stuck on "streaming".

Whether the widget is closed is not a run state: a run still draining when its widget is closed
keeps draining, and keeps its finals.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..audio.capture import AsyncDropOldest
from ..errors import StateError

__all__ = ["TRANSITIONS", "Run", "RunState", "check_step"]


class RunState(enum.Enum):
    """Where the Transcriber's run stands."""

    IDLE = "idle"  # no run: Start, or a file, may begin one
    STARTING = "starting"  # begun, its session task not yet running: ending it now opens no session
    CONNECTING = "connecting"  # the task is opening the session: ending it now abandons the attempt
    STREAMING = "streaming"  # the session is open and the audio flows to it
    DRAINING = "draining"  # the audio has ended: the session's last finals are awaited


_S = RunState
TRANSITIONS: Mapping[RunState, frozenset[RunState]] = {
    _S.IDLE: frozenset({_S.STARTING}),
    # back to idle: the source could not start, or the run was ended before its task ran
    _S.STARTING: frozenset({_S.CONNECTING, _S.IDLE}),
    # back to idle: refused, lost, abandoned, or the source had failed before the session began
    _S.CONNECTING: frozenset({_S.STREAMING, _S.IDLE}),
    # back to idle: the session failed, or a file's run was cancelled (its finals kept)
    _S.STREAMING: frozenset({_S.DRAINING, _S.IDLE}),
    _S.DRAINING: frozenset({_S.IDLE}),
}


def check_step(old: RunState, new: RunState) -> RunState:
    """Return ``new`` if the table allows the step from ``old``; raise :class:`StateError` if not."""
    if new not in TRANSITIONS[old]:
        raise StateError(f"a Transcriber run cannot go from {old.value} to {new.value}")
    return new


@dataclass
class Run:
    """What one run holds.  Each run gets a new one: this constructor is the reset."""

    queue: AsyncDropOldest | None = None  # live chunks waiting for the session; None once the audio has ended
    task: asyncio.Task[None] | None = None  # the task running the session
    stop_timer: asyncio.TimerHandle | None = None  # ends the run if the browser never confirms a Stop
    source_error: str = ""  # the source failed: shown instead of the run's own outcome
    dropped_seconds: float = 0.0  # live audio dropped while the session stalled
    audio: Any = None  # a file run's PCM, for its player
    finals: list[dict[str, Any]] = field(default_factory=list)  # this run's finals so far
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # set when the run is over

    def cancel_stop_timer(self) -> None:
        if self.stop_timer is not None:
            self.stop_timer.cancel()
            self.stop_timer = None
