"""The asyncio client against real websockets servers on 127.0.0.1 with scripted behaviour."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import numpy as np
import pytest

import bk_notebook as bk
from bk_notebook.protocol import ConnRequest, ServerProtocol

from fake_server import HANG_UP, SID, FakeConnection, FakeServer
from helpers import reply, scripted_server

TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.sig-NEVER-SHOW"


def fast_client(url: str, **kw: Any) -> bk.Client:
    kw.setdefault("retry_backoff", 0.01)
    return bk.Client(url, connect_timeout=2.0, reply_timeout=2.0, drain_timeout=2.0, **kw)


class Recorder(FakeServer):
    """Answers audioConn, records chunks, speaks when told to: a partial every ``partial_every`` chunks, a final at 10.

    ``on_chunk(conn, n)`` replaces that script; it returns :data:`HANG_UP` to end the connection.
    """

    def __init__(self, *, refuse: int = 0, partial_every: int = 5, on_chunk: Any = None,
                 stop_replies: tuple[str, ...] = (), answer_stop: bool = True) -> None:
        super().__init__(SID)
        self.refuse = refuse
        self.partial_every = partial_every
        self.on_chunk = on_chunk
        self.stop_replies = stop_replies
        self.answer_stop = answer_stop
        self.arrivals: list[float] = []

    async def on_conn(self, conn: FakeConnection, request: ConnRequest) -> None:
        if len(self.conn_requests) <= self.refuse:
            await conn.refuse("worker not available")
        else:
            self.accepted_at = asyncio.get_running_loop().time()
            await conn.accept()

    async def on_audio(self, conn: FakeConnection, audio: bytes) -> bool | None:
        self.arrivals.append(asyncio.get_running_loop().time())
        n = len(self.chunks)
        if self.on_chunk is not None:
            return HANG_UP if await self.on_chunk(conn, n) is HANG_UP else None
        if n % self.partial_every == 0:
            await conn.partial(f"p{n}")
        if n == 10:
            await conn.final("first", 0.0, 1.0)
        return None

    async def on_stop(self, conn: FakeConnection) -> None:
        for text in self.stop_replies:
            await conn.send(text)
        if self.answer_stop:
            await conn.stopped()


def speech(seconds: float = 2.0) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(int(16000 * seconds)) * 3000).astype(np.int16)


async def test_happy_path_with_partials_and_finals() -> None:
    server = Recorder(stop_replies=(ServerProtocol.final("second", 1.0, 2.0),))
    partials: list[str] = []
    finals: list[dict[str, Any]] = []
    async with scripted_server(server) as url:
        t = await fast_client(url).transcribe(speech(2.05), 16000, speed=None,
                                              on_partial=partials.append, on_final=finals.append)
    assert [len(c) for c in server.chunks] == [3200] * 20 + [1600]
    assert b"".join(server.chunks) == speech(2.05).tobytes()
    assert partials == ["p5", "p10", "p15", "p20"]
    assert t.finals == [
        {"segment": 0, "text": "first", "start": 0.0, "end": 1.0, "session_id": SID},
        {"segment": 1, "text": "second", "start": 1.0, "end": 2.0, "session_id": SID},
    ]
    assert finals == t.finals
    assert t.text == "first second" and t.session_id == SID
    assert t.duration == pytest.approx(2.05)
    assert server.bad_requests == []  # nothing the client sent is what the real server refuses


async def test_the_fake_server_refuses_what_the_real_one_refuses_and_keeps_it() -> None:
    from websockets.asyncio.client import connect

    server = FakeServer()
    async with scripted_server(server) as url, connect(url) as ws:
        await ws.send('{"bk": {"service": "stt", "type": "audioStream", "data": "AAAA"}}')  # no session yet
        refusal = json.loads(await ws.recv())["bk"]
    assert refusal["status"] != 200 and refusal["message"]
    assert [b.message for b in server.bad_requests] == [refusal["message"]]


async def test_a_final_after_audiostop_before_its_reply_is_kept() -> None:
    server = Recorder(on_chunk=lambda conn, n: asyncio.sleep(0),
                      stop_replies=(reply("audioStream", final="late words"),))
    async with scripted_server(server) as url:
        t = await fast_client(url).transcribe(speech(1.0), 16000, speed=None)
    assert t.text == "late words"
    assert t.finals[0]["timing"] == "estimated"
    assert t.finals[0]["end"] == pytest.approx(1.0)


async def test_stream_rechunks_any_length_and_yields_events() -> None:
    server = Recorder(partial_every=2)
    async with scripted_server(server) as url:
        async with fast_client(url).stream() as s:
            assert s.session_id == SID
            data = speech(1.0)
            for piece in np.array_split(data, 7):  # uneven pieces
                await s.send(piece)
            await s.send(data[:100].tobytes())
            t = await s.stop()
            seen = [e async for e in s.events()]
    assert all(len(c) == 3200 for c in server.chunks[:-1])
    assert b"".join(server.chunks) == data.tobytes() + data[:100].tobytes()
    assert [type(e).__name__ for e in seen][:2] == ["Partial", "Partial"]
    assert t.duration == pytest.approx((16000 + 100) / 16000)


async def test_async_callbacks_are_awaited() -> None:
    got: list[str] = []

    async def on_partial(text: str) -> None:
        await asyncio.sleep(0)
        got.append(text)

    async with scripted_server(Recorder()) as url:
        await fast_client(url).transcribe(speech(1.0), 16000, speed=None, on_partial=on_partial)
    assert got == ["p5", "p10"]


async def test_worker_unavailable_twice_then_success() -> None:
    server = Recorder(refuse=2)
    async with scripted_server(server) as url:
        t = await fast_client(url, connect_retries=3).transcribe(speech(1.0), 16000, speed=None)
    assert len(server.conn_requests) == 3 and t.session_id == SID


async def test_retries_exhausted_raise_worker_unavailable() -> None:
    server = Recorder(refuse=100)
    async with scripted_server(server) as url:
        with pytest.raises(bk.WorkerUnavailable, match="3 times") as info:
            await fast_client(url, connect_retries=3).transcribe(speech(1.0), 16000)
    assert len(server.conn_requests) == 3
    assert info.value.status == 400 and isinstance(info.value, bk.ServiceError)


@pytest.mark.parametrize("field", ["message", "error"])
async def test_status_400_mid_stream_keeps_earlier_finals(field: str) -> None:
    async def on_chunk(conn: FakeConnection, n: int) -> None:
        if n == 3:
            await conn.send(reply("audioStream", final="kept"))  # no times: the client estimates them
        if n == 6:
            await conn.send(json.dumps({"bk": {"type": "audioStream", "status": 400, field: "decoder crashed"}}))

    async with scripted_server(Recorder(on_chunk=on_chunk)) as url:
        with pytest.raises(bk.ServiceError, match="decoder crashed") as info:
            await fast_client(url).transcribe(speech(5.0), 16000, speed=None)
    assert info.value.transcript is not None and info.value.transcript.text == "kept"


async def test_connection_dropped_mid_stream_keeps_earlier_finals() -> None:
    async def on_chunk(conn: FakeConnection, n: int) -> bool | None:
        if n == 3:
            await conn.send(reply("audioStream", final="before the drop"))
        if n == 5:
            conn.ws.transport.abort()  # abrupt reset, no close frame
            return HANG_UP
        return None

    async with scripted_server(Recorder(on_chunk=on_chunk)) as url:
        with pytest.raises(bk.ConnectionLost) as info:
            await fast_client(url).transcribe(speech(30.0), 16000, speed=None)
    assert info.value.transcript.text == "before the drop"
    assert isinstance(info.value, bk.ConnectError)


async def test_a_server_that_never_answers_ends_in_stream_timeout() -> None:
    async def silent(ws: Any) -> None:
        async for _ in ws:
            pass

    async with scripted_server(silent) as url:
        client = bk.Client(url, reply_timeout=0.3, connect_timeout=1.0)
        with pytest.raises(bk.StreamTimeout, match="audioConn"):
            await client.transcribe(speech(0.5), 16000)


async def test_missing_audiostop_reply_returns_what_arrived_after_drain_timeout(caplog) -> None:
    server = Recorder(answer_stop=False)
    async with scripted_server(server) as url:
        client = bk.Client(url, drain_timeout=0.3)
        t = await client.transcribe(speech(1.5), 16000, speed=None)
    assert t.text == "first"
    assert t.complete is False and "INCOMPLETE" in repr(t) and "incomplete" in t._repr_html_()
    assert "no audioStop reply" in caplog.text


async def test_handshake_401_gives_auth_error() -> None:
    from http import HTTPStatus

    def refuse(connection: Any, request: Any) -> Any:
        return connection.respond(HTTPStatus.UNAUTHORIZED, "no\n")

    async with scripted_server(Recorder(), process_request=refuse) as url:
        with pytest.raises(bk.AuthError, match="401") as info:
            await bk.Client(url, token=TOKEN).transcribe(speech(0.5), 16000)
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)


@pytest.mark.parametrize("bad", ["{oops", b"\x00\x01binary", json.dumps({"nobk": 1}),
                                 json.dumps({"bk": {"type": "audioWhat", "status": 200}})])
async def test_malformed_and_binary_replies_give_protocol_error(bad: Any) -> None:
    async def on_chunk(conn: FakeConnection, n: int) -> None:
        if n == 2:
            await conn.send(reply("audioStream", final="ok so far"))
        if n == 4:
            await conn.send(bad)

    async with scripted_server(Recorder(on_chunk=on_chunk)) as url:
        with pytest.raises(bk.ProtocolError) as info:
            await fast_client(url).transcribe(speech(5.0), 16000, speed=None)
    assert info.value.transcript.text == "ok so far"


@pytest.mark.parametrize("speed", [5.0, 20.0])
async def test_pacing_never_sends_ahead_of_the_asked_rate(speed: float) -> None:
    server = Recorder(partial_every=1000)
    async with scripted_server(server) as url:
        await fast_client(url).transcribe(speech(1.0), 16000, speed=speed)
    # Chunk i carries audio from i*0.1 s: at `speed`, it may not leave before i*0.1/speed after the
    # session opened, and the session opened after the server sent its audioConn reply.
    for i, arrived in enumerate(server.arrivals):
        assert arrived - server.accepted_at >= i * 0.1 / speed
    assert len(server.arrivals) == 10


async def test_bad_audio_never_opens_a_connection() -> None:
    server = Recorder()
    async with scripted_server(server) as url:
        with pytest.raises(bk.AudioError):
            await fast_client(url).transcribe(np.array([0.0, np.nan]), 16000)
        with pytest.raises(bk.AudioError):
            await fast_client(url).transcribe(np.zeros(100), None)
        with pytest.raises(bk.AudioError):
            await fast_client(url).transcribe("/no/such/file.wav")
    assert server.connections == 0


async def test_connect_error_when_nothing_listens() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = bk.Client(f"ws://127.0.0.1:{port}/v1/prod/stream", connect_retries=2, retry_backoff=0.01)
    with pytest.raises(bk.ConnectError, match="cannot connect"):
        await client.transcribe(speech(0.2), 16000)


def test_client_settings_are_checked() -> None:
    with pytest.raises(bk.UsageError, match="ws://"):
        bk.Client("http://example.org/stream")
    with pytest.raises(bk.UsageError, match="reply_timeout"):
        bk.Client("ws://x/y", reply_timeout=0)
    with pytest.raises(bk.UsageError, match="connect_retries"):
        bk.Client("ws://x/y", connect_retries=0)


def test_url_and_token_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("BK_STT_URL", "ws://127.0.0.1:9/v1/prod/stream")
    monkeypatch.setenv("BK_TOKEN", TOKEN)
    client = bk.Client()
    assert client.url == "ws://127.0.0.1:9/v1/prod/stream" and client.has_token
    assert client.settings.connect_url().endswith("?token=" + TOKEN)
    monkeypatch.delenv("BK_STT_URL")
    assert bk.Client().url == bk.client.DEFAULT_URL


async def test_token_never_in_repr_str_errors_or_debug_logs(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client = bk.Client(f"ws://127.0.0.1:9/v1/prod/stream?token={TOKEN}", connect_retries=1)
    assert client.has_token and "token=" not in client.url
    assert TOKEN not in repr(client) and TOKEN not in str(client.__dict__.get("url"))
    with pytest.raises(bk.ConnectError) as info:
        await client.transcribe(speech(0.2), 16000)
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
    async with scripted_server(Recorder()) as url:
        await bk.Client(url, token=TOKEN).transcribe(speech(0.5), 16000, speed=None)
    # The scripted server here is plain websockets (test scaffolding): only the client side counts.
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "websockets.server")
    assert "GET /v1/prod/stream?token=***" in logged  # websockets' DEBUG line, redacted
    assert TOKEN not in logged
