"""Flow control, drain and bounds of the client, against scripted servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

import bk_notebook as bk
from bk_notebook.client.window import SendWindow, WindowMode
from bk_notebook.protocol import AudioRequest, ConnRequest, Request

from fake_server import FakeConnection, FakeServer
from helpers import MS, scripted_server

SID = "b" * 32


def noise(seconds: float) -> np.ndarray:
    return (np.random.default_rng(1).standard_normal(int(16000 * seconds)) * 3000).astype(np.int16)


class AnsweringServer(FakeServer):
    """Answers every chunk after ``decode`` seconds (a recogniser slower than the client), like the local server.

    A final every ``final_every`` chunks, an empty acknowledgement otherwise; ``answer`` False: partials
    only when "the text changes" (every 3rd chunk), as a server without per-chunk answers does.
    """

    def __init__(self, decode: float = 0.0, final_every: int = 10, answer: bool = True,
                 stop_finals: int = 0, stop_gap: float = 0.0, stop_reading_after: int | None = None) -> None:
        super().__init__(SID)
        self.decode, self.final_every, self.answer = decode, final_every, answer
        self.stop_finals, self.stop_gap = stop_finals, stop_gap
        self.stop_reading_after = stop_reading_after
        self.received = 0
        self.answered = 0
        self.most_in_flight = 0
        self.got_stop = False

    async def serve(self, conn: FakeConnection) -> None:
        # Reading and decoding apart, as in the local server: what was read and not yet answered is in flight.
        work: asyncio.Queue[Request] = asyncio.Queue()
        decoder = asyncio.create_task(self._decode(conn, work))
        try:
            async for request in self.requests(conn):
                if isinstance(request, AudioRequest):
                    self.received += 1
                    self.most_in_flight = max(self.most_in_flight, self.received - self.answered)
                    if self.received == self.stop_reading_after:
                        await conn.ws.wait_closed()  # never reads again
                await work.put(request)
        finally:
            decoder.cancel()

    async def _decode(self, conn: FakeConnection, work: asyncio.Queue[Request]) -> None:
        n = 0
        while True:
            request = await work.get()
            if isinstance(request, ConnRequest):
                await conn.accept()
            elif isinstance(request, AudioRequest):
                await asyncio.sleep(self.decode)
                n += 1
                if n % self.final_every == 0:
                    await conn.final(f"w{n}", (n - 10) / 10, n / 10)
                elif self.answer:
                    await conn.send(json.dumps({"bk": {"type": "audioStream", "status": 200}}))  # the shortest ack
                elif n % 3 == 0:
                    await conn.partial(f"p{n}")
                self.answered += 1
            else:
                self.got_stop = True
                for i in range(self.stop_finals):
                    await asyncio.sleep(self.stop_gap)
                    await conn.final(f"late{i}", 90.0 + i, 90.5 + i)
                await conn.stopped()


def client_sockets_to(port: int) -> list[Any]:
    psutil = pytest.importorskip("psutil")
    return [c for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port]


def client(url: str, **kw: Any) -> bk.Client:
    kw.setdefault("retry_backoff", 0.01)
    kw.setdefault("drain_timeout", 2.0)
    return bk.Client(url, connect_timeout=2.0, reply_timeout=kw.pop("reply_timeout", 5.0), **kw)


@pytest.mark.parametrize("window", [0.5, 1.0])
async def test_unanswered_audio_never_exceeds_the_window(window: float) -> None:
    server = AnsweringServer(decode=0.002)
    async with scripted_server(server) as url:
        t = await client(url, window_seconds=window).transcribe(noise(8.0), 16000, speed=None)
    assert server.most_in_flight == round(window * 10)  # reached, never passed
    assert t.complete and len(t) == 8 and server.received == 80


async def test_without_a_window_a_slow_server_gets_the_whole_backlog() -> None:
    server = AnsweringServer(decode=0.002)
    async with scripted_server(server) as url:
        t = await client(url, window_seconds=None).transcribe(noise(8.0), 16000, speed=None)
    assert t.complete and server.most_in_flight > 10  # the control the test above relies on


async def test_a_server_answering_only_changes_is_not_waited_for() -> None:
    server = AnsweringServer(answer=False, final_every=25)
    async with scripted_server(server) as url:
        async with client(url, window_seconds=0.5).stream(speed=None) as s:
            await s.send(noise(10.0))
            t = await s.stop()
            mode = s._window.mode
    assert mode is WindowMode.OFF and t.complete and [r["text"] for r in t.finals] == ["w25", "w50", "w75", "w100"]


async def test_the_drain_lasts_while_the_server_keeps_talking() -> None:
    # Ten finals 0.15 s apart after audioStop: 1.5 s in all, each gap well inside drain_timeout=0.6.
    server = AnsweringServer(stop_finals=10, stop_gap=0.15)
    async with scripted_server(server) as url:
        t = await client(url, drain_timeout=0.6).transcribe(noise(1.0), 16000, speed=None)
    assert t.complete and [r["text"] for r in t.finals][-10:] == [f"late{i}" for i in range(10)]


async def test_a_slow_decode_longer_than_the_window_patience_does_not_give_the_window_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A per-chunk server whose recogniser takes longer than the window's patience over one chunk (Whisper
    # finishing a long utterance on a busy machine: 6 s against 5 s). The window waits (up to reply_timeout)
    # instead of sending the rest of the file unpaced. The patience is scaled down, the ratios kept.
    monkeypatch.setattr(SendWindow, "PATIENCE", 500 * MS)
    server = AnsweringServer(final_every=10)
    slow_chunk = 30
    original = server._decode

    async def decode(conn: FakeConnection, work: asyncio.Queue[Request]) -> None:
        async def slow_get() -> Request:
            request = await get()
            if isinstance(request, AudioRequest) and server.answered == slow_chunk:
                await asyncio.sleep(600 * MS)
            return request

        get = work.get
        work.get = slow_get  # type: ignore[method-assign]
        await original(conn, work)

    server._decode = decode  # type: ignore[method-assign]
    async with scripted_server(server) as url:
        t = await client(url, reply_timeout=2000 * MS, window_seconds=1.0).transcribe(noise(8.0), 16000, speed=None)
    assert t.complete and len(t) == 8 and server.received == 80
    assert server.most_in_flight == 10  # the window held through the slow chunk: never more than 1 s in flight


@pytest.mark.parametrize("window", [pytest.param(3.0, marks=pytest.mark.slow), None])  # 3 s: waits out the window
async def test_a_server_that_stops_reading_ends_in_an_error_carrying_the_finals(window: float | None) -> None:
    server = AnsweringServer(stop_reading_after=25)
    async with scripted_server(server, max_queue=1, close_timeout=0.5) as url:
        port = int(url.split(":")[2].split("/")[0])
        c = client(url, reply_timeout=1.0, window_seconds=window)
        with pytest.raises((bk.StreamTimeout, bk.ConnectionLost)) as info:
            # Minutes of audio against a server that reads no more: without bounds this never returns.
            await asyncio.wait_for(c.transcribe(noise(300.0), 16000, speed=None), 60)
        assert not client_sockets_to(port)  # closed on our side, though the server never read the close
    t = info.value.transcript
    assert t is not None and [r["text"] for r in t.finals] == ["w10", "w20"] and not t.complete
    assert c.history[-1] is t


async def test_unread_events_are_bounded() -> None:
    server = AnsweringServer(final_every=1)  # a final for every chunk: 3000 events nobody reads
    async with scripted_server(server) as url:
        async with client(url).stream() as s:
            await s.send(noise(300.0))
            t = await s.stop()
            unread = [e async for e in s.events()]
    assert len(t) == 3000  # the result keeps every final
    assert len(unread) == bk.client.events.EVENT_BACKLOG and unread[-1].text == "w3000"


async def test_unread_events_are_bounded_in_bytes_too() -> None:
    big = "x" * 900_000  # under the client's 1 MiB reply limit

    class LongPartials(FakeServer):
        async def on_audio(self, conn: FakeConnection, audio: bytes) -> None:
            n = conn.chunks
            if n % 10 == 0:
                await conn.final(f"w{n}", (n - 10) / 10, n / 10)
            else:
                await conn.partial(f"p{n} {big}")

    async with scripted_server(LongPartials(SID), max_size=None) as url:
        async with client(url).stream() as s:
            await s.send(noise(6.0))  # 60 chunks: 54 partials of 0.9 MB and 6 finals, nobody reading
            backlog = s._events
            t = await s.stop()
            assert backlog.bytes <= bk.client.events.EVENT_BACKLOG_BYTES
            unread = [e async for e in s.events()]
    assert [r["text"] for r in t.finals] == [f"w{n}" for n in range(10, 61, 10)]
    assert sum(len(e.text) for e in unread) <= bk.client.events.EVENT_BACKLOG_BYTES
    assert [e.text for e in unread if isinstance(e, bk.protocol.Final)] == [r["text"] for r in t.finals]  # kept
    partials = [e.text.split()[0] for e in unread if isinstance(e, bk.protocol.Partial)]
    assert 0 < len(partials) < 54 and partials[-1] == "p59"  # the oldest went first
    assert backlog.bytes == 0  # all read


async def test_an_error_caught_inside_the_block_already_carries_the_transcript() -> None:
    class Failing(FakeServer):
        async def on_audio(self, conn: FakeConnection, audio: bytes) -> None:
            await conn.final("kept", 0.0, 0.1)
            await conn.error("audioStream")

    async with scripted_server(Failing(SID)) as url:
        async with client(url).stream() as s:
            with pytest.raises(bk.ServiceError) as from_send:
                for _ in range(100):
                    await s.send(noise(0.1))
                    await asyncio.sleep(0.01)
            assert from_send.value.transcript is s.transcript and s.transcript.text == "kept"
            with pytest.raises(bk.ServiceError) as from_events:
                async for _ in s.events():
                    pass
            assert from_events.value.transcript is s.transcript


async def test_sess_id_at_the_top_level_of_the_audioconn_reply_is_accepted() -> None:
    class TopLevel(FakeServer):
        async def on_conn(self, conn: FakeConnection, request: ConnRequest) -> None:
            conn.protocol.accept()  # the session opens; its reply goes out in the other shape
            await conn.send(json.dumps({"bk": {"type": "audioConn", "status": 200, "sess_id": SID}}))

        async def on_audio(self, conn: FakeConnection, audio: bytes) -> None:
            pass  # chunks unanswered, as before

    async with scripted_server(TopLevel(SID)) as url:
        t = await client(url).transcribe(noise(0.5), 16000, speed=None)
    assert t.session_id == SID and t.complete


async def test_pacing_is_not_slower_than_asked() -> None:
    arrivals: list[float] = []

    class Timed(FakeServer):
        async def answer(self, conn: FakeConnection, request: Request) -> bool | None:
            arrivals.append(asyncio.get_running_loop().time())
            if isinstance(request, AudioRequest):
                return None  # chunks unanswered, as before
            return await super().answer(conn, request)

    async with scripted_server(Timed(SID)) as url:
        await client(url).transcribe(noise(4.0), 16000, speed=5.0)
    # 4 s of audio at 5x is due in 0.8 s; real time would take 4 s. Half of real time is a wide margin.
    assert arrivals[-1] - arrivals[0] < 2.0
