"""``local_server()``: the embedded server in a background thread, for notebooks and tests."""

from __future__ import annotations

import asyncio
import atexit
import threading
from types import TracebackType
from typing import Any

from .app import BkServer, ServerConfig

__all__ = ["LocalServer", "local_server"]


_GRACE_SECONDS = 1.0  # running sessions may drain this long when the server stops; then 1001
_STOP_SECONDS = 3.0  # stop() returns within this, whatever the sessions and engines do
_running: list[LocalServer] = []  # started by local_server() in this process and not stopped yet
_running_lock = threading.Lock()


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
        self._stop_requested = threading.Event()
        self._holders = 1  # callers of local_server() sharing this server (see local_server)
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
            leftover = asyncio.all_tasks(self._loop)  # e.g. a connection handler still ending: bounded
            for task in leftover:
                task.cancel()
            if leftover:
                self._loop.run_until_complete(asyncio.wait(leftover, timeout=0.5))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
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
        await self._server.close(grace=_GRACE_SECONDS, close_timeout=0.4)

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/v1/prod/stream``."""
        return self._server.url

    @property
    def port(self) -> int:
        """The port it listens on (the one picked when ``port=0``)."""
        assert self._server.port is not None  # set before the constructor returns
        return self._server.port

    @property
    def engine(self) -> str:
        """Which engine runs (``"auto"`` resolved to ``"whisper"`` or ``"pocketsphinx"``)."""
        return self._server.engine

    @property
    def busy_workers(self) -> int:
        """How many workers the sessions hold now, counting those whose engine is still being reset; 0 when idle."""
        return self._server.busy_workers

    @property
    def running(self) -> bool:
        """Listening, and no stop asked for."""
        return self._thread.is_alive() and not self._stop_requested.is_set()

    @property
    def ended(self) -> bool:
        """True once the server's thread has finished, its sessions closed and its port released."""
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Stop the server: it stops listening at once, and sessions still open a second later are ended.

        Live sessions get a short grace period to drain, then close code 1001
        (going away).  Returns within 3 seconds with the port released;
        idempotent, and safe from any thread, including from a notebook cell on
        the kernel's event loop (which it blocks for at most those 3 seconds).
        """
        with _running_lock:
            if self in _running:
                _running.remove(self)
        atexit.unregister(self.stop)
        self._stop_requested.set()
        if not self._thread.is_alive():
            return
        try:
            self._loop.call_soon_threadsafe(self._stopped.set)
        except RuntimeError:  # the loop closed meanwhile: the thread is ending on its own
            pass
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=_STOP_SECONDS)

    def _release(self) -> None:
        """One holder leaves a ``with`` block: the last one stops the server."""
        with _running_lock:
            self._holders -= 1
            last = self._holders <= 0
        if last:
            self.stop()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._release()

    async def __aenter__(self) -> LocalServer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._release)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LocalServer(url={self.url!r}, engine={self.engine!r}, workers={self.config.workers}, {state})"


def local_server(
    engine: str = "auto",
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
    max_utterance_seconds: float = 20.0,
    max_queued_seconds: float = 300.0,
    decode_slots: int | None = None,
    admission: bool = True,
    language: str | None = None,
    model: str | None = None,
    prompt: str | None = None,
    hotwords: str | None = None,
    task: str | None = None,
    **engine_options: Any,
) -> LocalServer:
    """Start the embedded bahasakita-compatible server in the background.

    Parameters
    ----------
    engine : str
        ``"auto"`` (the default: ``"whisper"`` when the ``whisper`` extra is
        installed, else ``"pocketsphinx"``; logged once), ``"whisper"``
        (Whisper through faster-whisper: Indonesian, English and more),
        ``"pocketsphinx"`` (US English, light and fast), ``"energy"``
        (deterministic, for tests and teaching) or ``"module:Class"``.
    language : str, optional
        Whisper only: ``"auto"`` (the default: Indonesian or English, detected
        per utterance), ``"id"``, ``"en"`` or any Whisper language code.
    model : str, optional
        Whisper only: ``"base"`` (the default, multilingual), ``"tiny.en"``
        (English only, faster) or a folder holding a CTranslate2 Whisper model.
    prompt : str, optional
        Whisper only: the initial prompt of every decode, text in the style and
        vocabulary to expect; a session's own ``prompt`` (``client.transcribe(...,
        prompt=...)``) replaces it for that session.
    hotwords : str, optional
        Whisper only: words to expect (names, domain terms), given before the prompt.
    task : str, optional
        Whisper only: ``"transcribe"`` (the default) or ``"translate"`` (finals in
        English; each final's ``language`` stays the detected language of the speech).
    port : int
        0 picks a free port; read it back from ``.url``.
    workers : int
        Concurrent sessions; one more gets ``worker not available``.
    processes : bool
        Run each engine in its own worker process, so that sessions decode on
        every core (PocketSphinx holds the GIL while it decodes).  Off by default
        here: a spawned process re-imports ``__main__``, which a script without an
        ``if __name__ == "__main__":`` guard would run again (``bk-notebook serve``
        uses processes by default on a multi-core machine).
    max_utterance_seconds : float
        Continuous sound longer than this is cut into utterances (bounds a final's
        decode, so one noisy client cannot stall the others).
    max_queued_seconds : float
        Audio a session may have waiting for its engine; chunks beyond it are
        refused with a 400 (the client's send window keeps far below it).
    decode_slots : int, optional
        Engine calls that run at once (default: one per core); sessions take turns,
        so one session's backlog never delays another's next chunk by more than one decode.
    admission : bool
        Refuse a new session ("worker not available", which the client retries) when the
        measured cost of one more real-time session would make the live ones fall behind.
    allow_origins : tuple of str
        Browser origins (``http://localhost:8888``) allowed to connect; a
        handshake from any other ``Origin`` is refused with HTTP 403.
    certfile, keyfile : str, optional
        A certificate and its key: serve ``wss://`` instead of ``ws://``.
    **engine_options
        Passed to the engine (e.g. ``grammar=`` for pocketsphinx, ``partials=False`` or
        ``word_timestamps=False`` for whisper).

    Returns
    -------
    LocalServer
        A new server, or the one already running in this process with exactly
        these arguments: re-running a notebook cell ``server =
        bk.local_server()`` gives back the same server instead of starting
        another.  ``server.stop()`` stops it for everyone holding it; a ``with``
        block stops it on exit only if no other ``local_server()`` call shares it.

    Examples
    --------
    >>> server = bk.local_server()                      # doctest: +SKIP
    >>> client = bk.Client(server.url)                  # doctest: +SKIP
    >>> bk.local_server() is server                     # doctest: +SKIP
    True
    """
    if language is not None:
        engine_options["language"] = language
    if model is not None:
        engine_options["model"] = model
    for name, value in (("prompt", prompt), ("hotwords", hotwords), ("task", task)):
        if value is not None:
            engine_options[name] = value
    config = ServerConfig(
        host=host, port=port, engine=engine, workers=workers, tokens=tuple(tokens),
        idle_timeout=idle_timeout, engine_options=dict(engine_options), certfile=certfile, keyfile=keyfile,
        processes=processes, allow_origins=tuple(allow_origins), max_utterance_seconds=max_utterance_seconds,
        max_queued_seconds=max_queued_seconds, decode_slots=decode_slots, admission=admission,
    )
    with _running_lock:  # held while starting: two threads asking at once get one server
        _running[:] = [server for server in _running if server.running]
        for server in _running:
            if server.config == config:
                server._holders += 1
                return server
        server = LocalServer(config)
        _running.append(server)
    return server
