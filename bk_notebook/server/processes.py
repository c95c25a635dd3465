"""Engines in worker processes: decoding on every core instead of behind one GIL.

A :class:`ProcessEngine` has the engine interface (``reset``/``feed``/``flush``)
and forwards each call over a pipe to a child process that owns the real
engine.  The server calls it from its worker threads, which wait on the pipe
with the GIL released, so N sessions decode on up to N cores.  Children are
started with ``spawn`` (safe inside a Jupyter kernel and with threads running)
and end when their pipe closes or the parent exits.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

from .engines import engine_factory

__all__ = ["ProcessEngine"]


def _serve(conn: Connection, name: str, options: dict[str, Any]) -> None:  # runs in the child
    engine = engine_factory(name, **options)()
    conn.send(("ready", None))
    while True:
        try:
            method, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send(("ok", getattr(engine, method)(*args)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which drops this engine
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class ProcessEngine:
    """An engine living in its own process."""

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, name, options), daemon=True,
                                        name=f"bk-engine-{name}")
        self._process.start()
        child.close()
        self._expect()  # the engine is built (or its error raised) before the first session uses it

    def _expect(self) -> Any:
        try:
            status, value = self._conn.recv()
        except EOFError:
            raise RuntimeError("the engine process exited") from None
        if status == "error":
            raise RuntimeError(f"engine process failed: {value}")
        return value

    def _call(self, method: str, *args: Any) -> Any:
        self._conn.send((method, args))
        return self._expect()

    def reset(self) -> None:
        self._call("reset")

    def feed(self, pcm: bytes) -> list[Any]:
        return self._call("feed", pcm)  # type: ignore[no-any-return]

    def flush(self) -> list[Any]:
        return self._call("flush")  # type: ignore[no-any-return]

    def close(self) -> None:
        self._conn.close()
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
