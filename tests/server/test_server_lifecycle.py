"""The local server's lifecycle in one process: stop() ends live sessions, engines outlive signals, re-use."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import threading
from typing import Any

import numpy as np
import psutil
import pytest
from websockets.asyncio.client import connect

import bk_notebook as bk
from bk_notebook.server import local_server

from helpers import ROOT
from waiting import outliving, running


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return np.concatenate([np.zeros(8000), 0.3 * np.sin(2 * np.pi * 300 * t), np.zeros(8000)])


def port_of(server: Any) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/")[0])


def port_is_free(port: int) -> bool:
    try:
        socket.create_server(("127.0.0.1", port)).close()
    except OSError:
        return False
    return True


async def open_session(url: str) -> tuple[Any, str]:
    ws = await connect(url)
    await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
    return ws, json.loads(await ws.recv())["bk"]["data"]["sess_id"]


async def keep_streaming(ws: Any, sess: str) -> int | None:
    """Stream silence (reading the replies, as a client does) until the server closes; return its close code."""
    silence = base64.b64encode(bytes(3200)).decode()

    async def read_replies() -> None:
        async for _ in ws:
            pass

    reader = asyncio.create_task(read_replies())
    try:
        while True:
            await ws.send(json.dumps({"bk": {"service": "stt", "sess_id": sess, "type": "audioStream",
                                             "data": {"audio": silence}}}))
            await asyncio.sleep(0.05)
    except Exception:  # noqa: BLE001 - the close is what we wait for
        await asyncio.wait([reader], timeout=5)
        return ws.close_code


@pytest.mark.parametrize("caller", ["another thread", "the loop the session runs on"])
async def test_stop_ends_a_live_session_with_1001_and_frees_the_port(caller: str) -> None:
    server = local_server(engine="energy", workers=1, idle_timeout=30.0)
    port = port_of(server)
    ws, sess = await open_session(server.url)
    streaming = asyncio.create_task(keep_streaming(ws, sess))
    await asyncio.sleep(0.2)
    if caller == "another thread":
        await asyncio.get_running_loop().run_in_executor(None, server.stop)
    else:
        server.stop()  # blocks this loop: the session cannot answer the close, and stop() still returns
    assert server.ended  # it returned because the server ended, not on its join timeout
    assert port_is_free(port) and not server.running
    assert await asyncio.wait_for(streaming, 10) == 1001
    server.stop()  # idempotent


def test_stop_from_several_threads_at_once() -> None:
    server = local_server(engine="energy", workers=1, idle_timeout=31.0)
    assert server.running and not server.ended
    threads = [threading.Thread(target=server.stop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads) and server.ended
    assert port_is_free(port_of(server))


def test_the_same_arguments_return_the_running_server_and_with_blocks_share_it() -> None:
    first = local_server(engine="energy", workers=3, idle_timeout=32.0)
    try:
        assert local_server(engine="energy", workers=3, idle_timeout=32.0) is first  # a re-run cell
        assert local_server(engine="energy", workers=2, idle_timeout=32.0) is not first  # other arguments
        with local_server(engine="energy", workers=3, idle_timeout=32.0) as inner:
            assert inner is first
        assert first.running  # leaving the with block did not stop a server someone else holds
    finally:
        first.stop()
        local_server(engine="energy", workers=2, idle_timeout=32.0).stop()
    assert not first.running
    again = local_server(engine="energy", workers=3, idle_timeout=32.0)
    try:
        assert again is not first and again.running  # a stopped server is never handed out
    finally:
        again.stop()


def test_a_with_block_alone_stops_its_server() -> None:
    with local_server(engine="energy", workers=1, idle_timeout=33.0) as server:
        port = port_of(server)
    assert not server.running and port_is_free(port)


def engine_processes() -> list[int]:
    """Pids of this process's live engine processes, as ``ps`` shows them: spawned by multiprocessing."""
    return [child.pid for child in psutil.Process().children()
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline())]


async def idle_engines(server: Any, count: int) -> list[int]:
    """Pids of the engine processes, once ``count`` are running and no session holds one."""
    pids: list[int] = []
    for _ in range(1000):
        pids = engine_processes()
        if len(pids) == count and server.busy_workers == 0:
            return pids
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(pids)} engine processes, expected {count}")


async def two_sessions_at_once(client: bk.Client) -> list[str]:
    """Two sessions open at the same time: two engines are in use."""
    async with client.stream() as a, client.stream() as b:
        for stream, seconds in ((a, 0.6), (b, 0.9)):
            await stream.send((tone(seconds) * 32767).astype("<i2").tobytes())
        return [(await a.stop()).text, (await b.stop()).text]


async def test_engine_processes_ignore_sigint_and_a_dead_one_is_replaced() -> None:
    server = local_server(engine="energy", workers=2, processes=True, idle_timeout=34.0)
    client = bk.Client(server.url)
    try:
        assert await two_sessions_at_once(client) == ["sound 0.60 s", "sound 0.90 s"]
        first, second = await idle_engines(server, 2)
        os.kill(first, signal.SIGINT)  # what a Jupyter interrupt or a terminal's Ctrl-C sends them
        os.kill(second, signal.SIGKILL)  # an engine that died anyway (out of memory, killed)
        for _ in range(1000):  # wait until it is gone (without reaping it: that is the parent's job)
            if psutil.Process(second).status() == psutil.STATUS_ZOMBIE:
                break
            await asyncio.sleep(0.01)
        assert await two_sessions_at_once(client) == ["sound 0.60 s", "sound 0.90 s"]  # none got a dead engine
        now = await idle_engines(server, 2)
        assert first in now and second not in now and len(now) == 2
    finally:
        server.stop()


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_stops_serve_processes_cleanly(tmp_path) -> None:
    """Ctrl-C sends SIGINT to the terminal's whole foreground group: the server and its engines."""
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "bk_notebook.cli", "serve", "--processes", "--engine", "energy", "--port", "0",
         "--workers", "2"],
        stderr=subprocess.PIPE, text=True, start_new_session=True,  # its own group, as a terminal job
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
    )
    engines: list[int] = []
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "listening on" in line, line
        url = line.split("listening on", 1)[1].split()[0]
        client = bk.Client(url)
        assert asyncio.run(two_sessions_at_once(client)) == ["sound 0.60 s", "sound 0.90 s"]
        engines = [child.pid for child in psutil.Process(process.pid).children()]
        assert engines  # the engine processes exist, in the server's group
        os.killpg(process.pid, signal.SIGINT)  # the whole group, as the terminal does
        assert process.wait(30) == 0
        # Judged before reading stderr: an engine left running would hold the pipe open.
        assert not outliving(engines, timeout=10), "engine processes outlived the server by 10 s"
        rest = process.stderr.read()
        assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for pid in running(engines):
            os.kill(pid, signal.SIGKILL)  # what a failed run left behind
