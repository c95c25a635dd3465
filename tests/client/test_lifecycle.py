"""Interrupts, ended streams, history and the blocking facade: what a notebook user does to a session."""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import logging
import threading
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

import bk_notebook as bk
from bk_notebook.protocol import ConnRequest
from bk_notebook.transcript import Transcript

from client.test_flow import SID, AnsweringServer, client, client_sockets_to, noise
from fake_server import FakeConnection, FakeServer
from helpers import scripted_server
from waiting import default_sigint, live_threads, wait_until


class Stuck(FakeServer):
    """A server that is stuck in one phase: the handshake, audioConn, a refusal loop, or audioStop."""

    def __init__(self, phase: str) -> None:
        super().__init__(SID)
        self.phase = phase
        self.streaming = asyncio.Event()

    async def process_request(self, connection: Any, request: Any) -> None:
        if self.phase == "handshake":
            await asyncio.sleep(30)

    async def on_conn(self, conn: FakeConnection, request: ConnRequest) -> None:
        if self.phase == "retries":
            await conn.refuse()
        elif self.phase != "audioConn":
            await conn.accept()

    async def on_audio(self, conn: FakeConnection, audio: bytes) -> None:
        self.streaming.set()
        n = conn.chunks
        if n % 10 == 0:
            await conn.final(f"w{n}", (n - 10) / 10, n / 10)

    async def on_stop(self, conn: FakeConnection) -> None:
        pass  # never answered, in any phase


async def until(condition: Any, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("phase", ["handshake", "audioConn", "retries", "streaming", "drain"])
async def test_an_interrupt_in_every_phase_closes_the_socket_and_keeps_the_finals(phase: str, caplog) -> None:
    server = Stuck(phase)
    before = set(asyncio.all_tasks())
    # open_timeout: the stuck handshake gives up on the server's side soon after the client has left.
    async with scripted_server(server, process_request=server.process_request, open_timeout=2) as url:
        port = int(url.split(":")[2].split("/")[0])
        c = client(url, drain_timeout=60.0, reply_timeout=60.0, retry_backoff=30.0)
        speed = 10.0 if phase == "streaming" else None  # paced: the session is still streaming when cancelled
        task = asyncio.create_task(c.transcribe(noise(3.0 if phase == "drain" else 600.0), 16000, speed=speed))
        if phase == "handshake":
            await until(lambda: client_sockets_to(port))
        elif phase in ("audioConn", "retries"):
            await until(lambda: "audioConn" in server.kinds)
        elif phase == "streaming":
            await until(lambda: server.kinds.count("audioStream") >= 25)  # two finals received
        else:
            await until(lambda: "audioStop" in server.kinds)
        await asyncio.sleep(0.1)
        task.cancel()
        with caplog.at_level(logging.WARNING, "bk_notebook"):
            done, _ = await asyncio.wait([task], timeout=3.0)  # a bound for a hang, not a timing claim
        assert done and task.cancelled()
        assert not client_sockets_to(port)
        leftover = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()]
        assert not [t for t in leftover if "bk_notebook" in repr(t.get_coro())]
    if phase in ("streaming", "drain"):
        kept = c.history[-1]
        assert [r["text"] for r in kept.finals][:2] == ["w10", "w20"] and not kept.complete
        assert "finals kept in client.history" in caplog.text
    if phase == "streaming":
        assert server.kinds[-1] == "audioStop"  # the best-effort goodbye
    if phase in ("handshake", "audioConn", "retries"):
        assert c.history == []


async def test_an_ended_stream_says_so() -> None:
    server = AnsweringServer()
    async with scripted_server(server) as url:
        c = client(url)
        stream = c.stream()
        task = asyncio.create_task(_stream_forever(stream))
        await until(lambda: server.received >= 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert stream.state == "cancelled" and "cancelled" in repr(stream)
        with pytest.raises(bk.UsageError, match="cancelled"):
            await stream.stop()
        with pytest.raises(bk.UsageError, match="cancelled"):
            await stream.send(noise(0.1))

        async with c.stream() as s:
            await s.send(noise(1.0))
            t = await s.stop()
        assert t.complete and s.state == "closed"
        for call in (s.stop(), s.send(noise(0.1))):
            with pytest.raises(bk.UsageError, match="closed"):
                await call
        with pytest.raises(bk.UsageError, match="opens once"):
            async with s:
                pass


async def _stream_forever(stream: bk.Stream) -> None:
    async with stream as s:
        while True:
            await s.send(noise(0.1))
            await asyncio.sleep(0.01)


async def test_history_is_bounded_oldest_first_and_includes_failures() -> None:
    server = AnsweringServer()
    async with scripted_server(server) as url:
        c = client(url, history_size=3)
        results = [await c.transcribe(noise(s), 16000, speed=None) for s in (1.0, 2.0, 3.0, 4.0)]
        assert c.history == results[1:] and [len(t) for t in c.history] == [2, 3, 4]
        assert all(t.complete for t in c.history)

    class RefuseAfterOneFinal(FakeServer):
        async def on_audio(self, conn: FakeConnection, audio: bytes) -> None:
            await conn.final("before the failure", 0.0, 0.1)
            await conn.error("audioStream")

    async with scripted_server(RefuseAfterOneFinal(SID)) as url:
        c.url = url
        with pytest.raises(bk.ServiceError) as info:
            await c.transcribe(noise(2.0), 16000, speed=None)
    assert c.history[-1] is info.value.transcript and not c.history[-1].complete
    assert c.history[-1].text == "before the failure"


def test_a_forgotten_await_says_to_await() -> None:
    c = bk.Client("ws://127.0.0.1:9/v1/prod/stream")
    pending = c.transcribe(noise(0.1), 16000)
    with pytest.raises(bk.UsageError, match=r"await client\.transcribe") as info:
        pending.text  # noqa: B018
    assert "client.transcribe_sync(" in str(info.value) and isinstance(info.value, AttributeError)
    assert not hasattr(pending, "finals")  # hasattr() still answers (an AttributeError underneath)
    pending.close()
    module_level = bk.transcribe(noise(0.1), 16000, client=c)
    with pytest.raises(bk.UsageError, match=r"await bk\.transcribe"):
        module_level.finals  # noqa: B018
    module_level.close()


def test_transcribe_sync_in_a_script(energy_server) -> None:
    t = bk.Client(energy_server.url).transcribe_sync(bk.sample_path(), speed=None)
    assert isinstance(t, Transcript) and t.complete and len(t) >= 2
    t2 = bk.transcribe_sync(bk.sample_path(), speed=None, client=bk.Client(energy_server.url))
    assert t2.records() == t.records() or [r["text"] for r in t2.finals] == [r["text"] for r in t.finals]


class ServerThread:
    """A scripted server on its own loop in a thread: for tests whose main thread blocks (``*_sync``)."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.url = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with scripted_server(self.handler) as self.url:
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> str:
        self._thread.start()
        assert self._ready.wait(10)
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class CtrlCWhileStreaming(FakeServer):
    """Acknowledges each chunk; after ``chunks`` of them, presses Ctrl-C in the main thread."""

    def __init__(self, chunks: int) -> None:
        super().__init__(SID)
        self.chunks_before_ctrl_c = chunks

    async def on_audio(self, conn: FakeConnection, audio: bytes) -> None:
        # The interrupted client sends audioStop and closes at once: an acknowledgement can
        # meet a closed socket, and the messages already received must still be read.
        with contextlib.suppress(ConnectionClosed):
            await conn.acknowledge()
        if len(self.chunks) == self.chunks_before_ctrl_c:
            _thread.interrupt_main()  # as SIGINT from the terminal does


def test_ctrl_c_during_transcribe_sync_stops_the_session_in_its_thread() -> None:
    server = CtrlCWhileStreaming(chunks=5)
    with ServerThread(server) as url, default_sigint():  # whatever SIGINT the suite inherited
        with pytest.raises(KeyboardInterrupt):
            client(url).transcribe_sync(noise(120.0), 16000, speed=1.0)
        assert server.closed.wait(10)  # a bound for a hang, not a timing claim
        assert "audioStop" in server.kinds  # the session was stopped, not left streaming in the thread
    # A joined thread can stay listed for a moment while CPython tears it down: a bounded wait, not a race.
    wait_until(lambda: not live_threads("bk-blocking"))
    assert live_threads("bk-blocking") == []


async def test_transcribe_sync_inside_a_running_loop(energy_server) -> None:
    # A notebook cell without await: asyncio.run would refuse here; the facade runs on its own loop.
    pending = asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        asyncio.run(pending)
    pending.close()
    t = bk.Client(energy_server.url).transcribe_sync(bk.sample_path(), speed=None)
    assert t.complete and len(t) >= 2


async def test_create_task_and_gather_take_the_awaitable(energy_server) -> None:
    c = bk.Client(energy_server.url)
    task = asyncio.create_task(c.transcribe(bk.sample_path(), speed=None))
    both = await asyncio.gather(task, c.transcribe(bk.sample_path(), speed=None))
    assert [t.text for t in both][0] == both[1].text and all(t.complete for t in both)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "fast", True])
async def test_speed_is_a_multiple_of_real_time_and_checked_before_any_traffic(bad: Any) -> None:
    c = bk.Client("ws://127.0.0.1:9/v1/prod/stream", connect_retries=1)
    with pytest.raises(bk.UsageError, match="multiple of real time"):
        await c.transcribe(noise(0.5), 16000, speed=bad)


async def test_speed_max_means_unpaced_as_on_the_command_line(energy_server) -> None:
    t = await bk.Client(energy_server.url).transcribe(bk.sample_path(), speed="max")
    assert t.complete and len(t) >= 2
