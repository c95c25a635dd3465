"""A local server speaking the bahasakita streaming protocol, on a real recogniser.

Each websocket connection gets a :class:`~bk_notebook.protocol.ServerProtocol`
(the same sans-I/O core the client uses, in its server role) and, while a
session is open, an engine from a pool of ``workers``.  When every engine is
busy, ``audioConn`` is refused with ``worker not available``, as the service's
diagram shows, so running sessions keep their pace.  Engines are blocking code
and run in worker threads; the event loop only moves messages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import os
import ssl
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from ..protocol import (
    AUDIO_STREAM,
    MAX_CHUNK_BYTES,
    AudioRequest,
    BadRequest,
    ConnRequest,
    Final,
    ServerProtocol,
    StopRequest,
)
from ..redact import RedactingLogger
from .engines import Engine, engine_factory

__all__ = ["PATH", "BkServer", "ServerConfig"]

PATH = "/v1/prod/stream"
logger = logging.getLogger("bk_notebook.server")


@dataclass
class ServerConfig:
    """Settings of the local server (the CLI's ``serve`` flags)."""

    host: str = "127.0.0.1"
    port: int = 0
    engine: str = "pocketsphinx"
    workers: int = 4
    tokens: tuple[str, ...] = ()
    idle_timeout: float = 60.0
    engine_options: dict[str, Any] = field(default_factory=dict)
    certfile: str | None = None  # with keyfile: serve wss:// (TLS)
    keyfile: str | None = None
    processes: bool = False  # engines in worker processes: decoding uses every core

    @classmethod
    def tokens_from_env(cls) -> tuple[str, ...]:
        raw = os.environ.get("BK_SERVER_TOKENS", "")
        return tuple(t for t in raw.replace(",", " ").split() if t)


class _EnginePool:
    """At most ``size`` engines in use; idle ones are kept and reused."""

    def __init__(self, make: Callable[[], Engine], size: int) -> None:
        self._make = make
        self._size = size
        self._busy = 0
        self._idle: list[Engine] = []

    def try_reserve(self) -> bool:
        if self._busy >= self._size:
            return False
        self._busy += 1
        return True

    def take(self) -> Engine:
        """Called in a worker thread after ``try_reserve`` succeeded."""
        return self._idle.pop() if self._idle else self._make()

    def give_back(self, engine: Engine | None) -> None:
        self._busy -= 1
        if engine is not None:
            self._idle.append(engine)

    @property
    def busy(self) -> int:
        return self._busy

    def close(self) -> None:
        for engine in self._idle:
            close = getattr(engine, "close", None)
            if close is not None:
                close()
        self._idle.clear()


class _Session:
    """Bookkeeping of one open session on one connection."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.engine: Engine | None = None
        self.samples = 0
        self.finals = 0
        self.last_end = 0.0


class BkServer:
    """The server; ``await start()`` binds it, ``await close()`` stops it gracefully."""

    def __init__(self, config: ServerConfig) -> None:
        if config.workers < 1:
            raise ValueError("workers must be at least 1")
        self.config = config
        self._tokens = tuple(config.tokens)
        make = engine_factory(config.engine, **config.engine_options)  # checks the name now, in this process
        if config.processes:
            from .processes import ProcessEngine

            def make() -> Engine:
                return ProcessEngine(config.engine, config.engine_options)

        self._pool = _EnginePool(make, config.workers)
        self._executor = concurrent.futures.ThreadPoolExecutor(config.workers, thread_name_prefix="bk-engine")
        self._server: Any = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        scheme = "wss" if self.config.certfile else "ws"
        return f"{scheme}://{host}:{self.port}{PATH}"

    def _tls(self) -> ssl.SSLContext | None:
        if not self.config.certfile:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.config.certfile, self.config.keyfile)
        return context

    async def start(self) -> None:
        from websockets.asyncio.server import serve

        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._check_request,
            max_size=MAX_CHUNK_BYTES * 2,  # a base64 64 KiB chunk plus its JSON fits; more is refused
            compression=None,
            ssl=self._tls(),
            logger=RedactingLogger(logging.getLogger("websockets.server"), self._tokens),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("listening on %s (engine %s, %d workers)", self.url, self.config.engine, self.config.workers)

    async def serve_forever(self) -> None:
        await self._server.serve_forever()

    async def close(self, grace: float = 5.0, close_timeout: float = 0.5) -> None:
        """Stop listening at once; give running sessions ``grace`` seconds, then end them.

        Sessions still open after ``grace`` get close code 1001 (going away); a
        client that does not answer the close within ``close_timeout`` seconds
        (its loop may be the one waiting for this call) has its socket aborted.
        Everything is bounded: this returns within ``grace + 2 * close_timeout``
        seconds plus the time the engines take to end.
        """
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close(close_connections=False)  # the port is released now; running sessions go on
        try:
            await asyncio.wait_for(server.wait_closed(), grace)
        except asyncio.TimeoutError:
            closing = set()
            for connection in list(server.connections):
                connection.close_timeout = close_timeout
                closing.add(asyncio.ensure_future(connection.close(1001, "server shutting down")))
            try:
                await asyncio.wait_for(server.wait_closed(), 2 * close_timeout)
            except asyncio.TimeoutError:  # a handler stuck in an engine call: stop waiting for it
                stuck = list(getattr(server, "handler_tasks", ()))
                for task in stuck:
                    task.cancel()
                if stuck:
                    await asyncio.wait(stuck, timeout=close_timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._pool.close()

    # --------------------------------------------------------------- handshake
    def _check_request(self, connection: Any, request: Any) -> Any:
        parts = urllib.parse.urlsplit(request.path)
        if parts.path.rstrip("/") != PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, f"not found: the stream endpoint is {PATH}\n")
        if not self._tokens:
            return None
        given = dict(urllib.parse.parse_qsl(parts.query)).get("token", "")
        if not _token_ok(given, self._tokens):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or invalid token\n")
        return None

    # ------------------------------------------------------------- connection
    async def _handle(self, ws: Any) -> None:
        protocol = ServerProtocol()
        session: _Session | None = None
        try:
            while True:
                try:
                    message = await asyncio.wait_for(ws.recv(), self.config.idle_timeout)
                except asyncio.TimeoutError:
                    await ws.send(protocol.error(AUDIO_STREAM, f"closed: idle for {self.config.idle_timeout:g} s"))
                    await ws.close(1000, "idle timeout")
                    return
                request = protocol.receive(message)
                if isinstance(request, ConnRequest):
                    session = await self._open_session(ws, protocol)
                elif isinstance(request, BadRequest):
                    await ws.send(protocol.error(request.stage, request.message))
                elif isinstance(request, AudioRequest):
                    assert session is not None
                    await self._feed(ws, session, request.audio)
                elif isinstance(request, StopRequest):
                    assert session is not None
                    await self._stop_session(ws, protocol, session)
                    session = None
        except Exception as exc:  # noqa: BLE001 - a connection's failure must not touch others
            from websockets.exceptions import ConnectionClosed

            if not isinstance(exc, ConnectionClosed):
                logger.exception("connection failed")
        finally:
            if session is not None:
                self._log_session(session, "connection closed before audioStop")
                await self._release(session)

    async def _open_session(self, ws: Any, protocol: ServerProtocol) -> _Session | None:
        if not self._pool.try_reserve():
            await ws.send(protocol.refuse("worker not available"))
            return None
        session = _Session("")
        try:
            session.engine = await self._run(self._pool.take)
        except Exception:
            self._pool.give_back(None)
            logger.exception("engine failed to start")
            await ws.send(protocol.refuse("engine failed to start; see the server log"))
            return None
        await ws.send(protocol.accept())
        session.session_id = protocol.session_id or ""
        return session

    async def _feed(self, ws: Any, session: _Session, audio: bytes) -> None:
        assert session.engine is not None
        session.samples += len(audio) // 2
        await self._reply(ws, session, await self._run(session.engine.feed, audio))

    async def _stop_session(self, ws: Any, protocol: ServerProtocol, session: _Session) -> None:
        assert session.engine is not None
        await self._reply(ws, session, await self._run(session.engine.flush))
        await ws.send(protocol.stopped())
        self._log_session(session, "stopped")
        await self._release(session)

    async def _reply(self, ws: Any, session: _Session, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, Final):
                # An engine that does not know its times gets them estimated from the audio.
                end = event.end if event.end is not None else session.samples / 16_000
                start = event.start if event.start is not None else min(session.last_end, end)
                session.finals += 1
                session.last_end = end
                await ws.send(ServerProtocol.final(event.text, start, end))
            else:
                await ws.send(ServerProtocol.partial(event.text))

    async def _release(self, session: _Session) -> None:
        engine, session.engine = session.engine, None
        if engine is None:
            return
        try:
            await self._run(engine.reset)
        except Exception:  # noqa: BLE001 - a broken engine is dropped, not reused
            logger.exception("engine reset failed; dropping it")
            close = getattr(engine, "close", None)
            if close is not None:
                close()
            engine = None
        self._pool.give_back(engine)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @staticmethod
    def _log_session(session: _Session, how: str) -> None:
        logger.info(
            "session %s: %.1f s of audio, %d finals, %s",
            session.session_id,
            session.samples / 16_000,
            session.finals,
            how,
        )


def _token_ok(given: str, tokens: Iterable[str]) -> bool:
    ok = False
    for token in tokens:  # compare with every token: time does not depend on which matched
        ok |= hmac.compare_digest(given.encode(), token.encode())
    return ok
