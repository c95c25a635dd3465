"""One fake bahasakita server for the client's tests, speaking through the package's own ``ServerProtocol``.

Every client message is parsed by :meth:`ServerProtocol.receive` and every reply is written by its
``accept``/``partial``/``final``/``stopped``/``error``, as the local server does: a fake cannot drift from
the wire format, and a client message the real server would refuse gets the real refusal (and is kept in
:attr:`FakeServer.bad_requests`). A test scripts what differs from a quiet server by overriding
:meth:`FakeServer.on_conn`, :meth:`~FakeServer.on_audio` or :meth:`~FakeServer.on_stop`, or the whole
:meth:`~FakeServer.serve` loop; a deliberately malformed reply goes out through :meth:`FakeConnection.send`.

Run it with ``helpers.scripted_server(FakeServer())`` (a real websockets server on 127.0.0.1).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

from bk_notebook.protocol import AudioRequest, BadRequest, ConnRequest, Request, ServerProtocol, StopRequest

SID = "a" * 32

#: What a scripted hook returns to end the connection (the server stops reading it).
HANG_UP = False


class FakeConnection:
    """One client connection: its socket, its ``ServerProtocol`` and the replies a script sends on it."""

    def __init__(self, ws: Any, session_id: str) -> None:
        self.ws = ws
        self.protocol = ServerProtocol(lambda: session_id)
        self.chunks = 0  # audio chunks received on this connection

    async def send(self, text: str) -> None:
        """Send ``text`` as it is: for a reply the real server never sends (a test of the client's tolerance)."""
        await self.ws.send(text)

    async def accept(self) -> None:
        await self.ws.send(self.protocol.accept())

    async def refuse(self, message: str = "worker not available") -> None:
        await self.ws.send(self.protocol.refuse(message))

    async def acknowledge(self) -> None:
        await self.ws.send(self.protocol.acknowledge())

    async def partial(self, text: str) -> None:
        await self.ws.send(self.protocol.partial(text))

    async def final(self, text: str, start: float, end: float, **extra: Any) -> None:
        await self.ws.send(self.protocol.final(text, start, end, **extra))

    async def stopped(self) -> None:
        await self.ws.send(self.protocol.stopped())

    async def error(self, stage: str = "audioStream", message: str = "error message", status: int = 400) -> None:
        await self.ws.send(self.protocol.error(stage, message, status))


class FakeServer:
    """A quiet server: accepts every session, acknowledges every chunk, answers ``audioStop``.

    It records what it saw: :attr:`messages` (each message as sent), :attr:`kinds` (each good request's type,
    in order, over every connection),
    :attr:`chunks` (the audio), :attr:`conn_requests`, :attr:`connections` and :attr:`bad_requests`;
    :attr:`closed` is set when a connection's handler has ended (a ``threading.Event``: the server may run
    in a thread of its own).
    """

    def __init__(self, session_id: str = SID) -> None:
        self.session_id = session_id
        self.connections = 0
        self.messages: list[str | bytes] = []
        self.kinds: list[str] = []
        self.chunks: list[bytes] = []
        self.conn_requests: list[ConnRequest] = []
        self.bad_requests: list[BadRequest] = []
        self.closed = threading.Event()

    async def __call__(self, ws: Any) -> None:
        self.connections += 1
        try:
            await self.serve(FakeConnection(ws, self.session_id))
        finally:
            self.closed.set()

    async def requests(self, conn: FakeConnection) -> AsyncIterator[Request]:
        """The connection's requests as ``ServerProtocol`` reads them, recorded; a bad one is answered here."""
        async for raw in conn.ws:
            self.messages.append(raw)
            request = conn.protocol.receive(raw)
            if isinstance(request, BadRequest):
                self.bad_requests.append(request)
                await conn.error(request.stage, request.message)
                continue
            if isinstance(request, AudioRequest):
                self.kinds.append("audioStream")
                self.chunks.append(request.audio)
                conn.chunks += 1
            else:
                self.kinds.append("audioConn" if isinstance(request, ConnRequest) else "audioStop")
                if isinstance(request, ConnRequest):
                    self.conn_requests.append(request)
            yield request

    async def serve(self, conn: FakeConnection) -> None:
        """Answer each request through the hooks until the client leaves or a hook returns :data:`HANG_UP`."""
        async for request in self.requests(conn):
            if await self.answer(conn, request) is HANG_UP:
                return

    async def answer(self, conn: FakeConnection, request: Request) -> bool | None:
        if isinstance(request, ConnRequest):
            return await self.on_conn(conn, request)
        if isinstance(request, StopRequest):
            return await self.on_stop(conn)
        assert isinstance(request, AudioRequest)
        return await self.on_audio(conn, request.audio)

    async def on_conn(self, conn: FakeConnection, request: ConnRequest) -> bool | None:
        await conn.accept()
        return None

    async def on_audio(self, conn: FakeConnection, audio: bytes) -> bool | None:
        await conn.acknowledge()
        return None

    async def on_stop(self, conn: FakeConnection) -> bool | None:
        await conn.stopped()
        return None
