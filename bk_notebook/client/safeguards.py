"""A session's safeguards: settings in seconds checked, waits bounded, callbacks that cannot raise.

``positive_seconds`` checks a setting in seconds before any traffic, ``deadline`` bounds a wait
(``asyncio.timeout``), and ``call_back`` / ``call_back_sync`` call a user's callback so that its
exception is logged and never costs the session its finals.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import UsageError

__all__ = ["call_back", "call_back_sync", "deadline", "positive_seconds"]

logger = logging.getLogger("bk_notebook.client.client")


def positive_seconds(name: str, value: float) -> float:
    """``value`` as a float, or a UsageError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UsageError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


if sys.version_info >= (3, 11):
    deadline = asyncio.timeout
else:  # pragma: no cover - Python 3.10
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def deadline(delay: float | None) -> AsyncIterator[None]:
        task = asyncio.current_task()
        assert task is not None
        handle = asyncio.get_running_loop().call_later(delay, task.cancel) if delay else None
        try:
            yield
        except asyncio.CancelledError as exc:
            raise TimeoutError from exc
        finally:
            if handle:
                handle.cancel()


async def call_back(callback: Callable[..., Any] | None, arg: Any) -> None:
    """Call a user's callback (awaiting a coroutine); its exception is logged, never raised."""
    if callback is None:
        return
    try:
        result = callback(arg)
        if inspect.isawaitable(result):
            await result
    except Exception:  # a user's callback must not lose the session's finals
        logger.exception("callback %r raised; the session goes on", callback)


def call_back_sync(callback: Callable[[Any], Any], arg: Any) -> None:
    """Call a display or progress callback; its exception is logged, never raised."""
    try:
        callback(arg)
    except Exception:  # a display or progress callback must not end the session
        logger.exception("callback %r raised; the session goes on", callback)
