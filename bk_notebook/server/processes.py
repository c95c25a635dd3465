"""Engines in worker processes: decoding on every core instead of behind one GIL.

A :class:`ProcessEngine` has the engine interface (``reset``/``feed``/``flush``)
and forwards each call over a pipe to a child process that owns the real
engine.  The server calls it from its worker threads, which wait on the pipe
with the GIL released, so N sessions decode on up to N cores.  Children are
started with ``spawn`` (safe inside a Jupyter kernel and with threads running)
and end when their pipe closes or the parent exits.

Children ignore SIGINT.  Jupyter interrupts a kernel by sending SIGINT to its
whole process group, and a terminal's Ctrl-C goes to the whole foreground
group: either would kill every engine (and print its ``KeyboardInterrupt``
into the cell) although only the parent was meant.  The parent decides: the
kernel goes on, and ``bk-notebook serve`` shuts down and closes the pipes.
SIGINT is blocked in the starting thread while the child is spawned, so the
child starts with it blocked (the mask survives ``exec``) and no interrupt can
slip in before it is ignored.

A child that died anyway (killed, out of memory) is replaced before its next
session: the first call after a ``reset`` starts a new one.  A child that dies
in the middle of a session fails that session only.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from multiprocessing.connection import Connection
from typing import Any

from .engines import engine_factory

__all__ = ["ProcessEngine"]

logger = logging.getLogger("bk_notebook.server")
_MASKS = hasattr(signal, "pthread_sigmask")  # POSIX; elsewhere the child ignores SIGINT once it runs
_CLOSE_SECONDS = 1.0  # an idle child exits at once when its pipe closes; a busy one gets this long


def _serve(conn: Connection, name: str, options: dict[str, Any]) -> None:  # runs in the child
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # discards an interrupt that arrived while blocked
    if _MASKS:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    engine = engine_factory(name, **options)()
    conn.send(("ready", callable(getattr(engine, "set_prompt", None))))  # the parent offers set_prompt only then
    while True:
        try:
            method, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send(("ok", getattr(engine, method)(*args)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which drops this engine
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class _Exited(RuntimeError):
    """The child process is gone (its pipe closed)."""


class ProcessEngine:
    """An engine living in its own process (replaced when it died between sessions)."""

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self._name = name
        self._options = options
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, self._name, self._options), daemon=True,
                                        name=f"bk-engine-{self._name}")
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if _MASKS else None  # inherited
        try:
            self._process.start()
        finally:
            if blocked is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        child.close()
        self._fresh = True  # no session state in the child: it may be replaced without loss
        self.takes_prompt = bool(self._expect())  # the engine is built (or its error raised) before any session

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self._process.pid

    @property
    def alive(self) -> bool:
        """Whether the child process is running."""
        return self._process.is_alive()

    def _replace(self) -> None:
        logger.warning("engine process %s exited (code %s); starting a new one", self.pid, self._process.exitcode)
        self._conn.close()
        self._process.join(timeout=_CLOSE_SECONDS)
        self._start()

    def _expect(self) -> Any:
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError):
            raise _Exited("the engine process exited") from None
        if status == "error":
            raise RuntimeError(f"engine process failed: {value}")
        return value

    def _roundtrip(self, method: str, args: tuple[Any, ...]) -> Any:
        try:
            self._conn.send((method, args))
        except OSError:
            raise _Exited("the engine process exited") from None
        return self._expect()

    def _call(self, method: str, *args: Any) -> Any:
        if self._fresh and not self.alive:
            self._replace()  # died between sessions: nothing is lost by starting another
        fresh, self._fresh = self._fresh, False
        try:
            return self._roundtrip(method, args)
        except _Exited:
            if not fresh:
                raise  # the session's decoding state went with it: this session fails
            self._replace()  # it was dying as the session began
            return self._roundtrip(method, args)

    def reset(self) -> None:
        if not self.alive:
            self._replace()  # a new child is already reset
            return
        self._call("reset")
        self._fresh = True

    def feed(self, pcm: bytes) -> list[Any]:
        return self._call("feed", pcm)  # type: ignore[no-any-return]

    def flush(self) -> list[Any]:
        return self._call("flush")  # type: ignore[no-any-return]

    def set_prompt(self, prompt: str | None) -> None:
        if not self.takes_prompt:
            raise AttributeError(f"the {self._name} engine takes no prompt")
        self._call("set_prompt", prompt)

    def close(self) -> None:
        """End the child: its pipe closes, it exits; one still busy after a second is killed."""
        self._conn.close()
        self._process.join(timeout=_CLOSE_SECONDS)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=_CLOSE_SECONDS)
