"""Fair decoding and admission: one session's backlog never starves another, and a session that would
make the live ones fall behind is refused (the client's retry waits), as measured."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import numpy as np
import pytest

from bk_notebook.server import local_server
from bk_notebook.server.turns import DecodeTurns, Load

ENGINE = "tests.server.slow_engine:OneCoreEngine"


# ------------------------------------------------------------------ sans-I/O: turns and load
async def test_turns_are_round_robin_over_sessions() -> None:
    turns = DecodeTurns(1)
    order: list[str] = []
    started = asyncio.Event()

    async def session(name: str, calls: int) -> None:
        for i in range(calls):
            async with turns.turn():
                order.append(f"{name}{i}")
                started.set()
                await asyncio.sleep(0.005)

    greedy = asyncio.create_task(session("g", 6))
    await started.wait()
    await asyncio.gather(session("p", 3), greedy)
    assert order == ["g0", "p0", "g1", "p1", "g2", "p2", "g3", "g4", "g5"]
    assert turns.running == 0 and turns.waiting == 0


async def test_waiting_calls_are_served_in_arrival_order() -> None:
    turns = DecodeTurns(1)
    gate = asyncio.Event()
    order: list[str] = []

    async def call(name: str) -> None:
        async with turns.turn():
            order.append(name)
            await gate.wait()

    tasks = []
    for name in "abcd":  # a holds the turn; b, c, d queue in that order
        tasks.append(asyncio.create_task(call(name)))
        await asyncio.sleep(0)
    assert turns.waiting == 3
    gate.set()
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c", "d"]


async def test_a_cancelled_waiter_gives_no_turn_away_and_leaks_none() -> None:
    turns = DecodeTurns(1)
    gate = asyncio.Event()

    async def hold() -> None:
        async with turns.turn():
            await gate.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    assert turns.waiting == 1
    waiter.cancel()
    gate.set()
    await asyncio.gather(holder, waiter, return_exceptions=True)
    assert turns.running == 0 and turns.waiting == 0
    async with turns.turn():
        assert turns.running == 1


def test_load_admits_until_the_live_sessions_would_fall_behind() -> None:
    load = Load(slots=2, headroom=0.85)
    assert load.admits(0.0)  # nothing measured: admit
    for _ in range(50):
        load.decoded(0.1, 0.03)  # 0.3 s of engine per audio second
    assert load.cost == pytest.approx(0.3)
    for name in "abcde":
        load.opened(name, 0.0)
    for t in np.arange(0.0, 10.0, 0.1):
        for name in "abcde":
            load.arrived(name, 0.1, float(t))
    assert load.live_demand(10.0) == pytest.approx(1.5)
    assert not load.admits(10.0)  # 1.5 + 0.3 > 1.7
    load.closed("e")
    assert load.admits(10.0)  # 1.2 + 0.3 <= 1.7
    load.opened("greedy", 0.0)
    for t in np.arange(0.0, 10.0, 0.1):
        load.arrived("greedy", 3.0, float(t))  # 30x real time: takes what is left, is not protected
    assert load.live_demand(10.0) == pytest.approx(1.2) and load.admits(10.0)
    load.opened("young", 9.5)  # connected half a second ago, no audio yet: one real-time stream
    assert load.live_demand(10.0) == pytest.approx(1.5) and not load.admits(10.0)


# ------------------------------------------------------------------ through the real server
PCM = (0.3 * np.sin(np.arange(1600) / 3) * 32767).astype("<i2").tobytes()  # 100 ms of sound


async def open_session(url: str) -> tuple[Any, Any]:
    """A raw session: the websocket and the client's protocol object, once audioConn was accepted."""
    from websockets.asyncio.client import connect

    from bk_notebook.protocol import ClientProtocol, Connected

    protocol = ClientProtocol()
    ws = await connect(url, max_size=None)
    await ws.send(protocol.connect())
    events = protocol.receive(await ws.recv())
    if not any(isinstance(e, Connected) for e in events):
        await ws.close()
        raise RuntimeError(f"refused: {events}")
    return ws, protocol


async def answered(ws: Any, protocol: Any) -> None:
    """Read one chunk's reply; it must be a decode, not an error."""
    from bk_notebook.protocol import Final, Partial

    reply = await ws.recv()
    events = protocol.receive(reply)
    assert all(isinstance(e, (Partial, Final)) for e in events), reply[:200]


async def greedy_backlog(url: str, chunks: int, started: asyncio.Event) -> None:
    ws, protocol = await open_session(url)
    message = protocol.audio(PCM)
    for _ in range(chunks):
        await ws.send(message)  # all at once, never waiting for a reply
    started.set()
    for _ in range(chunks):
        await answered(ws, protocol)
    await ws.close()


async def paced_reply_delays(url: str, chunks: int) -> list[float]:
    """Stream at real time, one chunk per 100 ms, and time each chunk's reply."""
    ws, protocol = await open_session(url)
    message = protocol.audio(PCM)
    delays = []
    for _ in range(chunks):
        sent = time.perf_counter()
        await ws.send(message)
        await answered(ws, protocol)
        delays.append(time.perf_counter() - sent)
        await asyncio.sleep(max(0.0, 0.1 - (time.perf_counter() - sent)))
    await ws.close()
    return delays


async def test_a_greedy_backlog_delays_a_live_session_by_one_decode_at_most() -> None:
    # One core, 50 ms of decoding per 100 ms chunk: the greedy client queues 20 s of decoding.
    async with local_server(engine=ENGINE, workers=2, decode_slots=1, admission=False, cost=0.5) as server:
        started = asyncio.Event()
        greedy = asyncio.create_task(greedy_backlog(server.url, 400, started))
        await started.wait()
        await asyncio.sleep(0.5)  # its backlog is queued and decoding
        delays = await paced_reply_delays(server.url, 20)
        greedy.cancel()
    # Each paced chunk waits for at most the greedy chunk being decoded (50 ms), then its own (50 ms).
    assert max(delays) < 0.5, [round(d, 3) for d in delays]


@pytest.mark.slow  # live sessions at real time for seconds
async def test_a_session_that_would_make_the_live_ones_fall_behind_is_refused(caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="bk_notebook.server")
    # 40 ms of decoding per 100 ms chunk on one slot: two live sessions need 0.8 of it, a third would need 1.2.
    async with local_server(engine=ENGINE, workers=4, decode_slots=1, cost=0.4) as server:
        live = [asyncio.create_task(paced_reply_delays(server.url, 70)) for _ in range(2)]
        await asyncio.sleep(5.5)  # both measured as real-time sessions
        with pytest.raises(RuntimeError, match="worker not available"):
            await open_session(server.url)
        delays = await asyncio.gather(*live)
        assert max(max(d) for d in delays) < 0.5  # the two kept up with real time
        ws, _ = await open_session(server.url)  # once they have gone, a new session is admitted
        await ws.close()
    # The need is measured from the decoding's wall time (0.79 and 0.97 were seen on a loaded machine):
    # the refusal says why, with a measured figure; what the figure is exactly is a benchmark's business.
    need = re.search(r"refused a session: the live sessions need ([0-9.]+) of 1 decoding slots", caplog.text)
    assert need is not None and float(need.group(1)) > 0.5, caplog.text
