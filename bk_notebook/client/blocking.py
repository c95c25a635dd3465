"""Blocking use of the async API, and a hint for the forgotten ``await``.

The blocking facade runs the one async implementation on a private event loop
in a worker thread, so it works the same in a plain script and inside a
notebook whose loop is already running (where ``asyncio.run`` refuses).
"""

from __future__ import annotations

import asyncio
import collections.abc
import threading
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

from ..errors import NotAwaitedError

__all__ = ["Awaitable", "NotAwaitedError", "run_blocking"]

T = TypeVar("T")


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end on a private loop in a worker thread and return its result.

    Ctrl-C (``KeyboardInterrupt`` in the calling thread) cancels it there, so
    the session sends its best-effort ``audioStop`` and closes before this returns.
    """
    loop = asyncio.new_event_loop()
    outcome: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            outcome["task"] = task = loop.create_task(coroutine)
            outcome["value"] = loop.run_until_complete(task)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            outcome["error"] = exc
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    worker = threading.Thread(target=run, name="bk-blocking", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)  # wakes for Ctrl-C, which a bare join() would sit through
    except BaseException:
        task = outcome.get("task")
        if task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
        worker.join(5.0)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


class Awaitable(collections.abc.Coroutine):  # type: ignore[type-arg]
    """A coroutine that explains itself when used without ``await``.

    ``t = client.transcribe(x, sr); t.text`` would otherwise fail with
    "'coroutine' object has no attribute 'text'".  It is a real coroutine to
    asyncio (``create_task``, ``gather`` and ``await`` take it as one).
    """

    def __init__(self, coroutine: Coroutine[Any, Any, Any], call: str) -> None:
        self._coroutine = coroutine
        self._call = call

    def __await__(self) -> Generator[Any, None, Any]:
        return self._coroutine.__await__()

    def send(self, value: Any) -> Any:
        return self._coroutine.send(value)

    def throw(self, *args: Any) -> Any:
        return self._coroutine.throw(*args)

    def close(self) -> None:
        self._coroutine.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # introspection (IPython's _repr_*_, copy, pickle): a plain answer
            raise AttributeError(name)
        sync = self._call.replace("(", "_sync(", 1)
        raise NotAwaitedError(
            f"{self._call} is a coroutine: its result has no .{name} until it is awaited. "
            f"Write `t = await {self._call}` in a notebook cell or async function, "
            f"or `t = {sync}` in a plain script"
        )

    def __repr__(self) -> str:
        return f"<awaitable {self._call}: use `await` to run it>"
