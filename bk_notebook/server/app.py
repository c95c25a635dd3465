"""A local server speaking the bahasakita streaming protocol, on a real recogniser.

Each websocket connection gets a :class:`~bk_notebook.protocol.ServerProtocol`
(the same sans-I/O core the client uses, in its server role) and, while a
session is open, an engine from a pool of ``workers``.  When every engine is
busy, ``audioConn`` is refused with ``worker not available``, as the service's
diagram shows, so running sessions keep their pace.  Engines are blocking code
and run in worker threads; the event loop only moves messages.  How one
connection reads, decodes and answers (one reply per ``audioStream`` chunk, a
bounded queue of audio) is in :mod:`bk_notebook.server.session`; how workers are
reserved and always given back, in :mod:`bk_notebook.server.pool`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import ipaddress
import logging
import os
import ssl
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from ..protocol import MAX_CHUNK_BYTES
from ..redact import RedactingLogger
from .engines import ENGINES, Engine, built_engine, resolve_engine
from .pool import EnginePool
from .session import Connection, ConnectionSettings
from .turns import DecodeTurns, Load

__all__ = ["PATH", "BkServer", "ServerConfig"]

PATH = "/v1/prod/stream"
logger = logging.getLogger("bk_notebook.server")


@dataclass
class ServerConfig:
    """Settings of the local server (the CLI's ``serve`` flags)."""

    host: str = "127.0.0.1"
    port: int = 0
    engine: str = "auto"  # whisper when installed, else pocketsphinx
    workers: int = 4
    tokens: tuple[str, ...] = ()
    idle_timeout: float = 60.0
    engine_options: dict[str, Any] = field(default_factory=dict)
    certfile: str | None = None  # with keyfile: serve wss:// (TLS)
    keyfile: str | None = None
    processes: bool = False  # engines in worker processes: decoding uses every core
    allow_origins: tuple[str, ...] = ()  # browser origins allowed to connect (``Origin`` header); none by default
    # Audio a connection may have read but not yet decoded (about 46 kB of memory per second);
    # a chunk beyond it is refused with a 400.  Clients that wait for the per-chunk replies never
    # come near it; the service's sample (10x real time, no waiting) stays under it for files of
    # a few minutes even when the engine decodes at 2x.
    max_queued_seconds: float = 300.0
    # Continuous sound longer than this is cut into utterances (the built-in engines; whisper: at most 28 s):
    # noise or a talk without pauses cannot grow one utterance, and its final decode, without bound.
    max_utterance_seconds: float = 20.0
    # Engine calls that run at once, taken in turns by the sessions (None: one per core).
    decode_slots: int | None = None
    # Refuse audioConn ("worker not available") when one more real-time session would make the
    # live ones fall behind, as the decode turns measure it.
    admission: bool = True

    @classmethod
    def tokens_from_env(cls) -> tuple[str, ...]:
        raw = os.environ.get("BK_SERVER_TOKENS", "")
        return tuple(t for t in raw.replace(",", " ").split() if t)


class BkServer:
    """The server; ``await start()`` binds it, ``await close()`` stops it gracefully."""

    def __init__(self, config: ServerConfig) -> None:
        if config.workers < 1:
            raise ValueError("workers must be at least 1")
        if config.max_queued_seconds <= 0:
            raise ValueError("max_queued_seconds must be positive")
        self.config = config
        self._tokens = tuple(config.tokens)
        origins = (config.allow_origins,) if isinstance(config.allow_origins, str) else tuple(config.allow_origins)
        self._origins = frozenset(_origin_key(check_origin(o)) for o in origins)
        self._refused_origins: set[str] = set()  # each refused origin is logged once: a page may retry forever
        options: dict[str, object] = dict(config.engine_options)
        spec = ENGINES.get(resolve_engine(config.engine, options.get("model")))
        if spec is not None and spec.cuts_utterances:
            options.setdefault("max_utterance_seconds", config.max_utterance_seconds)
        # Checks engine, model and language now, in this process; loads a whisper model once for every
        # session's thread (engine processes load their own).  "auto" may fall back to pocketsphinx here.
        self.engine, options, make = built_engine(config.engine, options, preload=not config.processes)
        if config.processes:
            from .processes import ProcessEngine

            def make() -> Engine:
                return ProcessEngine(self.engine, options)

        self._executor = concurrent.futures.ThreadPoolExecutor(config.workers, thread_name_prefix="bk-engine")
        self._pool = EnginePool(make, config.workers, self._executor)
        self._settings = ConnectionSettings(config.idle_timeout, config.max_queued_seconds)
        slots = config.decode_slots or os.cpu_count() or 1
        self._turns = DecodeTurns(slots)
        # Whisper's sessions share one decoder in this process: admission reads its measured throughput.
        spec = ENGINES.get(self.engine)  # what was built: "auto" may have fallen back to pocketsphinx
        decoder = spec.shared_decoder(**options) if spec is not None and not config.processes else None
        self._load = Load(slots, decoder=decoder) if config.admission else None
        self._server: Any = None
        self.port: int | None = None

    @property
    def busy_workers(self) -> int:
        """How many workers the sessions hold now, counting those whose engine is still being reset."""
        return self._pool.busy

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
        logger.info("listening on %s (engine %s, %d workers)", self.url, self.engine, self.config.workers)

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
        # A browser names the page that opened the socket; any web page could otherwise use this server.
        # Same-origin requests pass, as in Jupyter Server and Tornado: websocket-client sends the server's
        # own address as its Origin by default. Clients that send no Origin are not affected.
        origins = request.headers.get_all("Origin")
        host = request.headers.get("Host", "")
        refused = [origin for origin in origins
                   if _origin_key(origin) not in self._origins and not same_origin(origin, host)]
        if refused:
            if len(self._refused_origins) < 100 and refused[0] not in self._refused_origins:
                self._refused_origins.add(refused[0])
                logger.warning("refused handshakes from origin %s (allow it with --allow-origin)",
                               ascii(refused[0][:100]))
            return connection.respond(HTTPStatus.FORBIDDEN, "origin not allowed (see --allow-origin)\n")
        if not self._tokens:
            return None
        given = dict(urllib.parse.parse_qsl(parts.query)).get("token", "")
        if not _token_ok(given, self._tokens):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or invalid token\n")
        return None

    # ------------------------------------------------------------- connection
    async def _handle(self, ws: Any) -> None:
        await Connection(ws, self._pool, self._settings, self._turns, self._load).run()


def _origin_key(origin: str) -> str:
    """``HTTPS://Example.org:8888/`` and ``https://example.org:8888`` name the same origin."""
    return origin.strip().rstrip("/").lower()


def same_origin(origin: str, host: str) -> bool:
    """True when ``origin`` names the address the request was sent to (its ``Host`` header).

    Only for a host that cannot be rebound by DNS (``localhost`` or an IP address): a page at
    ``http://evil.example:PORT`` whose name an attacker points at 127.0.0.1 sends ``Host: evil.example:PORT``
    too, so a same-origin rule for names would let it in.  Jupyter Server refuses such hosts the same way.
    """
    netloc = urllib.parse.urlsplit(origin.strip()).netloc.lower()
    if not netloc or netloc != host.strip().lower():
        return False
    name = urllib.parse.urlsplit(f"//{netloc}").hostname or ""
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_origin(origin: str) -> str:
    """Return ``origin`` if it is a browser origin (``scheme://host[:port]`` or ``null``), else raise UsageError."""
    from ..errors import UsageError

    parts = urllib.parse.urlsplit(origin.strip())
    if origin.strip() == "null" or (parts.scheme and parts.netloc and parts.path in ("", "/")
                                     and not parts.query and not parts.fragment):
        return origin
    raise UsageError(f"not an origin: {origin!r}; write it as a browser sends it, e.g. http://localhost:8888")


def _token_ok(given: str, tokens: Iterable[str]) -> bool:
    ok = False
    for token in tokens:  # compare with every token: time does not depend on which matched
        ok |= hmac.compare_digest(given.encode(), token.encode())
    return ok
