"""Engines for sessions: a bounded pool, and leases that always give their engine back.

A session takes a :class:`Lease` with :meth:`EnginePool.try_lease` before it
awaits anything, so from that instant exactly one object knows about the
reserved worker.  :meth:`Lease.release` is synchronous and idempotent: the
connection calls it in the ``finally`` of its handler, which runs whatever
ended the connection (a close before the ``audioConn`` reply, an abort, an
engine error, a timeout, cancellation at shutdown) and cannot be interrupted
by a cancellation, since it never awaits.  The engine is reset in a worker
thread afterwards and only then does its slot return to the pool; an engine
whose reset fails is closed and its slot freed.

Engine calls of one lease hold a lock, so the reset never runs beside a
``feed`` that a cancelled await left running in its thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

from .engines import Engine

__all__ = ["EnginePool", "Lease"]

logger = logging.getLogger("bk_notebook.server")


class EnginePool:
    """At most ``size`` engines in use; idle ones are kept and reused.

    Parameters
    ----------
    make : callable
        Builds a new engine (called in a worker thread).
    size : int
        How many sessions may hold an engine at once.
    executor : concurrent.futures.Executor
        Where engines are built, called and reset.
    """

    def __init__(self, make: Callable[[], Engine], size: int, executor: concurrent.futures.Executor) -> None:
        self._make = make
        self._size = size
        self._executor = executor
        self._lock = threading.Lock()  # leases give back from worker threads
        self._busy = 0
        self._idle: list[Engine] = []

    def try_lease(self) -> Lease | None:
        """Reserve a worker, or return None when all ``size`` are in use."""
        with self._lock:
            if self._busy >= self._size:
                return None
            self._busy += 1
        return Lease(self)

    @property
    def busy(self) -> int:
        """Workers reserved, including those whose engine is still being reset."""
        return self._busy

    def _take(self) -> Engine:
        with self._lock:
            engine = self._idle.pop() if self._idle else None
        return engine if engine is not None else self._make()

    def _give_back(self, engine: Engine | None) -> None:
        with self._lock:
            self._busy -= 1
            if engine is not None:
                self._idle.append(engine)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for engine in idle:
            _close_engine(engine)


class Lease:
    """One reserved worker and, once :meth:`start` has run, its engine."""

    def __init__(self, pool: EnginePool) -> None:
        self._pool = pool
        self._engine: concurrent.futures.Future[Engine] | None = None
        self._calls = threading.Lock()
        self._released = False
        self._reuse = True

    async def start(self) -> None:
        """Take an idle engine or build one (in a worker thread); raises what building raised."""
        self._engine = self._pool._executor.submit(self._pool._take)
        await asyncio.wrap_future(self._engine)

    def has(self, method: str) -> bool:
        """Whether the engine (started) has ``method``: optional parts of the interface, such as ``drain``."""
        return self._engine is not None and self._engine.done() and not self._engine.exception() and callable(
            getattr(self._engine.result(), method, None))

    async def call(self, method: str, *args: Any) -> Any:
        """Run ``engine.method(*args)`` in a worker thread."""
        if self._engine is None or self._released:
            raise RuntimeError("the lease has no engine (not started, or released)")
        engine = self._engine.result()
        future = self._pool._executor.submit(self._locked, getattr(engine, method), *args)
        return await asyncio.wrap_future(future)

    async def set_prompt(self, prompt: str) -> bool:
        """Give the engine this session's prompt; False when the engine takes none (it is optional)."""
        if self._engine is None or self._released:
            raise RuntimeError("the lease has no engine (not started, or released)")
        engine = self._engine.result()
        if not callable(getattr(engine, "set_prompt", None)):
            return False
        future = self._pool._executor.submit(self._locked, _set_prompt, engine, prompt)
        return await asyncio.wrap_future(future)  # type: ignore[no-any-return]

    def _locked(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._calls:
            return fn(*args)

    def release(self, *, reuse: bool = True) -> None:
        """Give the worker back (idempotent; never awaits, so nothing can skip it).

        With ``reuse=False`` (the engine failed) the engine is closed instead of reset.
        """
        if self._released:
            return
        self._released = True
        self._reuse = reuse
        if self._engine is None:
            self._pool._give_back(None)
        else:  # when the engine is built (now, if it already is), reset it, then return it
            self._engine.add_done_callback(self._reset_and_return)

    def _reset_and_return(self, built: concurrent.futures.Future[Engine]) -> None:
        if built.cancelled() or built.exception() is not None:
            self._pool._give_back(None)
            return
        engine = built.result()
        if not self._reuse:
            _close_engine(engine)
            self._pool._give_back(None)
            return
        try:
            self._pool._executor.submit(self._reset, engine)
        except RuntimeError:  # the executor is shut down: the server is closing
            _close_engine(engine)
            self._pool._give_back(None)

    def _reset(self, engine: Engine) -> None:
        try:
            self._locked(engine.reset)
        except Exception:  # noqa: BLE001 - a broken engine is dropped, not reused
            logger.exception("engine reset failed; dropping it")
            _close_engine(engine)
            self._pool._give_back(None)
        else:
            self._pool._give_back(engine)


def _close_engine(engine: Engine) -> None:
    close = getattr(engine, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001 - closing is best effort
            logger.exception("engine close failed")


def _set_prompt(engine: Any, prompt: str) -> bool:
    """``engine.set_prompt(prompt)``; False when its engine turns out to take none (a process engine)."""
    try:
        engine.set_prompt(prompt)
    except AttributeError:
        return False
    return True
