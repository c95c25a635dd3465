"""Workers go back to the pool whatever ends a connection (issue 12.1): every exit path."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect

from bk_notebook.server.engines import engine_factory
from bk_notebook.server.pool import EnginePool
from bk_notebook.server.session import Connection, ConnectionSettings

from server.test_server_flow import (
    STOPPED,
    audio_message,
    chunks_of,
    open_session,
    server,
    stop_message,
    tone,
    unpaced_session,
    wait_until,
)

WORKERS = 4
CONN = json.dumps({"bk": {"service": "stt", "type": "audioConn"}})


async def all_workers_serve(url: str) -> None:
    """``WORKERS`` sessions open at the same time, each transcribed to the end."""
    async with contextlib_stack(WORKERS, url) as sockets:
        ids = [await open_session(ws) for ws in sockets]  # every audioConn accepted: no worker leaked
        for ws, sess_id in zip(sockets, ids, strict=True):
            for c in chunks_of(tone(0.4).tobytes()):
                await ws.send(audio_message(sess_id, c))
            await ws.send(stop_message(sess_id))
        for ws in sockets:
            replies = []
            while not replies or replies[-1] != STOPPED:
                replies.append(json.loads(await asyncio.wait_for(ws.recv(), 30))["bk"])
            assert [r["data"]["final"] for r in replies if "final" in r.get("data", {})] == ["sound 0.40 s"]


class contextlib_stack:  # noqa: N801 - used as a context manager
    def __init__(self, n: int, url: str) -> None:
        self.n, self.url, self.sockets, self.cms = n, url, [], []

    async def __aenter__(self) -> list[Any]:
        for _ in range(self.n):
            cm = connect(self.url)
            self.sockets.append(await cm.__aenter__())
            self.cms.append(cm)
        return self.sockets

    async def __aexit__(self, *exc: Any) -> None:
        for cm in self.cms:
            await cm.__aexit__(None, None, None)


@pytest.mark.parametrize("how", ["abort", "close"])
async def test_four_audioconns_closed_before_the_reply_leak_no_worker(how: str) -> None:
    # A slow-starting engine makes sure the client is gone before the reply is sent.
    with server(engine="tests.server.slow_engine:SlowEngine", workers=WORKERS,
                engine_options={"inner": "energy", "speed": 50.0, "start_delay": 0.3}) as s:
        for _ in range(WORKERS):
            ws = await connect(s.url)
            await ws.send(CONN)
            if how == "abort":
                ws.transport.abort()  # no close frame: a vanished client
            else:
                await ws.close()
        await wait_until(lambda: s._server._pool.busy == 0)
        await all_workers_serve(s.url)


async def close_mid_stream(url: str) -> None:
    async with connect(url) as ws:
        sess_id = await open_session(ws)
        for c in chunks_of(tone(1.0).tobytes())[:10]:
            await ws.send(audio_message(sess_id, c))


async def close_after_stop(url: str) -> None:
    async with connect(url) as ws:
        sess_id = await open_session(ws)
        for c in chunks_of(tone(1.0).tobytes()):
            await ws.send(audio_message(sess_id, c))
        await ws.send(stop_message(sess_id))


async def abort_mid_stream(url: str) -> None:
    ws = await connect(url)
    sess_id = await open_session(ws)
    await ws.send(audio_message(sess_id, bytes(3200)))
    ws.transport.abort()


async def go_idle(url: str) -> None:
    async with connect(url) as ws:
        await open_session(ws)
        await asyncio.wait_for(ws.wait_closed(), 30)  # the server closes it (idle_timeout)


@pytest.mark.parametrize("exit_path", [close_mid_stream, close_after_stop, abort_mid_stream, go_idle])
async def test_every_way_a_connection_ends_gives_its_worker_back(exit_path: Any) -> None:
    with server(engine="tests.server.slow_engine:SlowEngine", workers=WORKERS, idle_timeout=0.5,
                engine_options={"inner": "energy", "speed": 5.0}) as s:
        await asyncio.gather(*(exit_path(s.url) for _ in range(WORKERS)))
        await wait_until(lambda: s._server._pool.busy == 0)
        await all_workers_serve(s.url)


FAILING = """
from bk_notebook.server.engines import EnergyEngine
class FailsInFeed(EnergyEngine):
    def feed(self, pcm):
        if len(pcm) == 3198: raise RuntimeError("boom")
        return super().feed(pcm)
class FailsToStart:
    def __init__(self): raise RuntimeError("no model")
    def reset(self): pass
    def feed(self, pcm): return []
    def flush(self): return []
"""


async def test_an_engine_failing_mid_stream_gets_a_500_and_its_worker_is_replaced(tmp_path, monkeypatch) -> None:
    (tmp_path / "failing_engines.py").write_text(FAILING)
    monkeypatch.syspath_prepend(str(tmp_path))
    with server(engine="failing_engines:FailsInFeed", workers=1) as s:
        for _ in range(2):
            async with connect(s.url) as ws:
                sess_id = await open_session(ws)
                await ws.send(audio_message(sess_id, bytes(3198)))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 30))["bk"]
                assert reply["status"] == 500 and "engine failed" in reply["message"]
                await asyncio.wait_for(ws.wait_closed(), 30)
            await wait_until(lambda: s._server._pool.busy == 0)
        replies = await unpaced_session(s.url, chunks_of(tone(0.4).tobytes()))
        assert [r["data"]["final"] for r in replies if "final" in r.get("data", {})] == ["sound 0.40 s"]


async def test_an_engine_failing_to_start_is_refused_and_frees_its_worker(tmp_path, monkeypatch) -> None:
    (tmp_path / "failing_engines.py").write_text(FAILING)
    monkeypatch.syspath_prepend(str(tmp_path))
    with server(engine="failing_engines:FailsToStart", workers=1) as s:
        for _ in range(3):
            async with connect(s.url) as ws:
                await ws.send(CONN)
                reply = json.loads(await asyncio.wait_for(ws.recv(), 30))["bk"]
            # 500, not the busy 400 a client retries; the reason, not "see the server log"
            assert reply["status"] == 500 and "engine failed to start: RuntimeError: no model" in reply["message"]
            assert s._server._pool.busy == 0


async def test_the_client_raises_the_engines_failure_at_once_instead_of_retrying(tmp_path, monkeypatch) -> None:
    import bk_notebook as bk

    (tmp_path / "failing_engines.py").write_text(FAILING)
    monkeypatch.syspath_prepend(str(tmp_path))
    with server(engine="failing_engines:FailsToStart", workers=1) as s:
        client = bk.Client(s.url, connect_retries=5, retry_backoff=30.0)  # a retry would wait 30 s or more
        with pytest.raises(bk.ServiceError) as info:
            await asyncio.wait_for(client.transcribe(tone(0.4), sr=16000, speed=None), 20)
    assert not isinstance(info.value, bk.WorkerUnavailable) and info.value.status == 500
    assert "the engine failed to start: RuntimeError: no model" in str(info.value)


class FakeSocket:
    """Just enough of a websocket for a Connection, fed by the test."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[str] = asyncio.Queue()
        self.sent: list[str] = []

    async def recv(self) -> str:
        return await self.incoming.get()

    async def send(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


async def test_a_connection_cancelled_while_its_engine_decodes_gives_the_worker_back() -> None:
    executor = concurrent.futures.ThreadPoolExecutor(2)
    make = engine_factory("tests.server.slow_engine:SlowEngine", inner="energy", speed=1.0)
    pool = EnginePool(make, 1, executor)
    ws = FakeSocket()
    task = asyncio.create_task(Connection(ws, pool, ConnectionSettings(60.0, 60.0)).run())
    await ws.incoming.put(CONN)
    await wait_until(lambda: ws.sent)
    sess_id = json.loads(ws.sent[0])["bk"]["data"]["sess_id"]
    for c in chunks_of(np.zeros(16000 * 3, "<i2").tobytes()):
        await ws.incoming.put(audio_message(sess_id, c))
    await wait_until(lambda: len(ws.sent) >= 3)  # decoding is under way, 100 ms per chunk
    assert pool.busy == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: pool.busy == 0)  # reset after the running feed, then returned
    assert pool.try_lease() is not None
    executor.shutdown()


class BrokenSocket(FakeSocket):
    """A socket whose recv fails with an unexpected error once the session is open."""

    async def recv(self) -> str:
        if self.sent:
            raise RuntimeError("the transport broke")
        return await super().recv()


@pytest.mark.parametrize("breaks", ["reader", "decoder"])
async def test_an_unexpected_error_in_either_task_ends_the_connection_and_frees_the_worker(
        breaks: str, monkeypatch, caplog) -> None:
    executor = concurrent.futures.ThreadPoolExecutor(2)
    pool = EnginePool(engine_factory("energy"), 1, executor)
    ws = BrokenSocket() if breaks == "reader" else FakeSocket()
    connection = Connection(ws, pool, ConnectionSettings(60.0, 60.0))
    if breaks == "decoder":
        real_chunk = connection._chunk

        async def chunk(audio: bytes) -> None:
            await real_chunk(audio)
            raise RuntimeError("a bug in the decoder")

        monkeypatch.setattr(connection, "_chunk", chunk)
    task = asyncio.create_task(connection.run())
    await ws.incoming.put(CONN)
    await wait_until(lambda: ws.sent)
    sess_id = json.loads(ws.sent[0])["bk"]["data"]["sess_id"]
    await ws.incoming.put(audio_message(sess_id, bytes(3200)))
    await asyncio.wait_for(task, 30)  # ends on its own: no hang
    assert "connection failed" in caplog.text
    await wait_until(lambda: pool.busy == 0)
    executor.shutdown()
