"""``local_server()``: the embedded server in a background thread, for notebooks and tests."""

from __future__ import annotations

import asyncio
import atexit
import threading
from types import TracebackType
from typing import Any

from .app import BkServer, ServerConfig

__all__ = ["LocalServer", "local_server"]


class LocalServer:
    """A running local server: ``.url`` to connect to, ``.stop()`` to end it.

    It runs on its own event loop in a daemon thread, so it never blocks the
    kernel (a long cell does not stall it) and it goes away with the process.
    Use it as a context manager, sync or async, or call :meth:`stop`.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._server = BkServer(config)  # engine errors (missing extra) surface here
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped = asyncio.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bk-local-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        atexit.register(self.stop)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        try:
            await self._server.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stopped.wait()
        await self._server.close(grace=1.0)

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/v1/prod/stream``."""
        return self._server.url

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the server and wait for its thread (idempotent)."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=10)
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def __aenter__(self) -> LocalServer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.stop)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LocalServer(url={self.url!r}, engine={self.config.engine!r}, workers={self.config.workers}, {state})"


def local_server(
    engine: str = "pocketsphinx",
    port: int = 0,
    workers: int = 4,
    *,
    host: str = "127.0.0.1",
    tokens: tuple[str, ...] = (),
    idle_timeout: float = 60.0,
    certfile: str | None = None,
    keyfile: str | None = None,
    processes: bool = False,
    allow_origins: tuple[str, ...] = (),
    **engine_options: Any,
) -> LocalServer:
    """Start the embedded bahasakita-compatible server in the background.

    Parameters
    ----------
    engine : str
        ``"pocketsphinx"`` (real offline English recognition), ``"energy"``
        (deterministic, for tests and teaching) or ``"module:Class"``.
    port : int
        0 picks a free port; read it back from ``.url``.
    workers : int
        Concurrent sessions; one more gets ``worker not available``.
    processes : bool
        Run each engine in its own worker process, so that sessions decode on
        every core (PocketSphinx holds the GIL while it decodes).
    allow_origins : tuple of str
        Browser origins (``http://localhost:8888``) allowed to connect; a
        handshake from any other ``Origin`` is refused with HTTP 403.
    certfile, keyfile : str, optional
        A certificate and its key: serve ``wss://`` instead of ``ws://``.
    **engine_options
        Passed to the engine (e.g. ``grammar=`` for pocketsphinx).

    Examples
    --------
    >>> server = bk.local_server()                      # doctest: +SKIP
    >>> client = bk.Client(server.url)                  # doctest: +SKIP
    """
    config = ServerConfig(
        host=host, port=port, engine=engine, workers=workers, tokens=tuple(tokens),
        idle_timeout=idle_timeout, engine_options=dict(engine_options), certfile=certfile, keyfile=keyfile,
        processes=processes, allow_origins=tuple(allow_origins),
    )
    return LocalServer(config)
