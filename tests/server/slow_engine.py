"""An engine that decodes slower than real time, to exercise backlogs on purpose.

Plug it in as ``--engine tests.server.slow_engine:SlowEngine`` or
``local_server(engine="tests.server.slow_engine:SlowEngine", speed=0.5)`` from the
repository root (``module:Class`` engines are imported with the current
directory on ``sys.path``).  It wraps a real engine (``inner``, default
PocketSphinx) and sleeps after each ``feed`` so that a chunk of ``d`` seconds
takes at least ``d / speed`` seconds: ``speed=0.5`` decodes at half real time.
The sleep releases the GIL, like a busy recogniser in another process would.
``start_delay`` seconds are slept when the engine is built (a slow model load).
Without the option, ``$BK_SLOW_ENGINE_SPEED`` sets the speed (for a server
started as a subprocess, whose CLI takes no engine options).
"""

from __future__ import annotations

import os
import time
from typing import Any

from bk_notebook.server.engines import engine_factory

SAMPLE_RATE = 16_000


class SlowEngine:
    """A real engine (``inner``) slowed to ``speed`` times real time."""

    def __init__(
        self, speed: float | None = None, inner: str = "pocketsphinx", start_delay: float = 0.0, **options: Any
    ) -> None:
        if speed is None:
            speed = float(os.environ.get("BK_SLOW_ENGINE_SPEED", "0.5"))
        if speed <= 0:
            raise ValueError("speed must be positive (0.5 = half real time)")
        self.speed = speed
        self.inner = engine_factory(inner, **options)()
        self.seconds_fed = 0.0
        time.sleep(start_delay)  # a slow model load

    def reset(self) -> None:
        self.inner.reset()
        self.seconds_fed = 0.0

    def feed(self, pcm: bytes) -> list[Any]:
        began = time.perf_counter()
        events = self.inner.feed(pcm)
        seconds = len(pcm) / 2 / SAMPLE_RATE
        self.seconds_fed += seconds
        time.sleep(max(0.0, seconds / self.speed - (time.perf_counter() - began)))
        return events

    def flush(self) -> list[Any]:
        return self.inner.flush()


_ONE_CORE = __import__("threading").Lock()


class OneCoreEngine:
    """The energy engine on "one core": every instance decodes under one shared lock, ``cost``
    seconds per audio second, as a recogniser that holds the GIL in C code does.

    ``threading.Lock`` is not fair: a thread that releases it and asks again at once usually wins,
    so without the server's turns a session with a backlog starves the others (the real problem).
    """

    def __init__(self, cost: float = 0.5, **options: Any) -> None:
        self.cost = cost
        self.inner = engine_factory("energy", **options)()

    def reset(self) -> None:
        self.inner.reset()

    def feed(self, pcm: bytes) -> list[Any]:
        with _ONE_CORE:
            time.sleep(len(pcm) / 2 / SAMPLE_RATE * self.cost)
            return self.inner.feed(pcm)

    def flush(self) -> list[Any]:
        return self.inner.flush()
