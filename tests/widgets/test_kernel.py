"""A real ipykernel driven as JupyterLab drives it: interrupts, stops, closes and re-runs leak nothing.

Each test starts a kernel (tests/widgets/kernel_harness.py), runs cells in it, and counts what the kernel
process holds (threads, fds, TCP connections, listening ports, child processes) before and after.
"""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from widgets.kernel_harness import Kernel, running_kernel, settle

pytestmark = pytest.mark.slow


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    with running_kernel() as k:
        yield k

TONES = """
import asyncio
import numpy as np
import bk_notebook as bk

def tone(seconds):
    t = np.arange(int(16000 * seconds)) / 16000
    gap = np.zeros(8000)
    return np.concatenate([gap, 0.3 * np.sin(2 * np.pi * 300 * t), gap])

async def two_at_once():
    a, b = await asyncio.gather(client.transcribe(tone(0.6), 16000, speed=None),
                                client.transcribe(tone(0.9), 16000, speed=None))
    return [a.text, b.text]
"""

SERVER_LOG = """
import logging
server_log = []

class _Keep(logging.Handler):
    def emit(self, record):
        server_log.append(record.getMessage())

logging.getLogger("bk_notebook.server").addHandler(_Keep())
logging.getLogger("bk_notebook.server").setLevel(logging.INFO)
"""


def engine_children(k: Kernel) -> set[int]:
    return {pid for pid in k.resources().children if "bk-engine" in " ".join(_cmdline(pid)) or _is_spawned(pid)}


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def _is_spawned(pid: int) -> bool:
    return "multiprocessing.spawn" in " ".join(_cmdline(pid)) or "spawn_main" in " ".join(_cmdline(pid))


def test_process_engines_survive_an_interrupt_of_an_unrelated_cell(kernel: Kernel) -> None:
    kernel.run(TONES + "server = bk.local_server(engine='energy', workers=2, processes=True)\n"
               "client = bk.Client(server.url)")
    assert kernel.value("await two_at_once()") == ["sound 0.60 s", "sound 0.90 s"]
    engines = engine_children(kernel)
    assert len(engines) == 2, kernel.resources()

    busy = kernel.start("import time\nprint('sleeping', flush=True)\ntime.sleep(120)")
    kernel.wait_for_output(busy, "sleeping")
    kernel.interrupt()  # SIGINT to the kernel's whole process group, engines included
    interrupted = kernel.wait(busy)
    assert interrupted.error is not None and interrupted.error["ename"] == "KeyboardInterrupt"

    # The same engine processes serve the next transcriptions; none printed a traceback.
    assert kernel.value("await two_at_once()") == ["sound 0.60 s", "sound 0.90 s"]
    assert engines <= engine_children(kernel), "an engine process died of the interrupt"
    printed = interrupted.stderr + interrupted.stdout + kernel.stray_output()
    assert "KeyboardInterrupt" not in printed and "Traceback" not in printed, printed


def test_stop_with_a_live_session_ends_it_with_1001_and_releases_the_port(kernel: Kernel) -> None:
    kernel.run("import asyncio, base64, json, socket, time\nimport bk_notebook as bk")
    before = kernel.resources()
    kernel.run("""
from websockets.asyncio.client import connect
server = bk.local_server(engine="energy", workers=1)
port = int(server.url.rsplit(":", 1)[1].split("/")[0])
live = {}

async def live_session():
    async with connect(server.url) as ws:
        await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
        sess = json.loads(await ws.recv())["bk"]["data"]["sess_id"]
        live["session"] = sess
        silence = base64.b64encode(bytes(3200)).decode()

        async def read_replies():
            async for _ in ws:
                pass

        reader = asyncio.ensure_future(read_replies())
        try:
            while True:  # a microphone that never stops
                await ws.send(json.dumps({"bk": {"service": "stt", "sess_id": sess, "type": "audioStream",
                                                 "data": {"audio": silence}}}))
                await asyncio.sleep(0.1)
        except Exception as exc:
            await asyncio.wait([reader], timeout=5)
            live["closed"] = [ws.close_code, type(exc).__name__]

live_task = asyncio.ensure_future(live_session())
""")
    assert kernel.wait_until("live.get('session')")
    port = kernel.value("port")
    during = kernel.resources()
    assert port in during.listening and during.established >= before.established + 2  # both ends, one process

    # On the kernel's own loop, where the live session also runs (and so cannot answer while stop() waits).
    result = kernel.value("[server.stop(), server.ended, server.running][1:]")
    assert result == [True, False]  # stop() returned because the server thread ended, not on its timeout
    assert kernel.value("socket.create_server(('127.0.0.1', port)).close()") is None  # the port is free
    assert kernel.wait_until("live.get('closed')")[0] == 1001  # going away
    kernel.run("await live_task")
    after = settle(kernel.resources, before)
    assert after.listening == before.listening and after.established == before.established
    assert after.threads == before.threads, (before, after)
    assert after.fds == before.fds, (before, after)


def test_transcriber_close_ends_its_session_and_frees_the_worker(kernel: Kernel) -> None:
    kernel.run(SERVER_LOG + """
import bk_notebook as bk
from bk_notebook.widgets import Transcriber
from ipywidgets.widgets.widget import _instances
server = bk.local_server(engine="energy", workers=1)   # one worker: a leaked session blocks the next
client = bk.Client(server.url)
widgets_before = len(_instances)
tr = Transcriber(client)
tr.start()
""")
    assert kernel.wait_until("'streaming' in tr.status.value")
    open_connections = kernel.resources().established
    kernel.run("tr.close()")
    assert kernel.wait_until("any('stopped' in line for line in server_log)")  # the server saw it end
    assert kernel.value("len(_instances) - widgets_before") == 0  # all 21 widgets closed
    assert settle(lambda: kernel.resources().established, open_connections - 2) == open_connections - 2
    kernel.run("tr2 = Transcriber(client)\ntr2.start()")
    assert kernel.wait_until("'streaming' in tr2.status.value or 'error' in tr2.status.value")
    assert "streaming" in kernel.value("tr2.status.value")  # the only worker was free again
    kernel.run("tr2.close()")


def test_rerunning_the_server_and_transcriber_cells_does_not_stack(kernel: Kernel) -> None:
    kernel.run(SERVER_LOG + "import bk_notebook as bk\nfrom bk_notebook.widgets import Transcriber\n"
               "from ipywidgets.widgets.widget import _instances\nservers = []")
    server_cell = ("server = bk.local_server(engine='pocketsphinx')\nclient = bk.Client(server.url)\n"
                   "servers.append(server)")
    kernel.run(server_cell, cell_id="server-cell")
    once = kernel.resources()
    for _ in range(4):
        kernel.run(server_cell, cell_id="server-cell")
    assert kernel.value("len({id(s) for s in servers})") == 1
    five = settle(kernel.resources, once)
    assert (five.listening, five.threads, five.fds) == (once.listening, once.threads, once.fds)

    transcriber_cell = "tr = Transcriber(client)\ntr.start()"
    kernel.run(transcriber_cell, cell_id="transcriber-cell")
    assert kernel.wait_until("'streaming' in tr.status.value")
    widgets_once = kernel.value("len(_instances)")
    for _ in range(4):
        kernel.run(transcriber_cell, cell_id="transcriber-cell")
        assert kernel.wait_until("'streaming' in tr.status.value or 'error' in tr.status.value")
        assert "streaming" in kernel.value("tr.status.value")  # never "worker not available"
    assert kernel.wait_until("sum('stopped' in line for line in server_log) == 4")  # the four earlier ones ended
    assert kernel.value("len(_instances)") == widgets_once  # 21 per Transcriber, not 5 x 21
    kernel.run("tr.close()\nserver.stop()")


def test_restarting_the_kernel_ends_its_engine_processes(kernel: Kernel) -> None:
    kernel.run(TONES + "server = bk.local_server(engine='energy', workers=2, processes=True)\n"
               "client = bk.Client(server.url)")
    assert kernel.value("await two_at_once()") == ["sound 0.60 s", "sound 0.90 s"]
    engines = engine_children(kernel)
    assert len(engines) == 2
    kernel.restart()

    def alive() -> set[int]:
        return {pid for pid in engines if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"}

    assert settle(alive, set()) == set()  # the old kernel's engines ended with it (their pipes closed)
    kernel.run(TONES + "server = bk.local_server(engine='energy', workers=2, processes=True)\n"
               "client = bk.Client(server.url)")
    assert kernel.value("await two_at_once()") == ["sound 0.60 s", "sound 0.90 s"]  # the new kernel starts afresh


def test_interrupting_transcribe_keeps_the_finals_and_leaves_no_connection(kernel: Kernel) -> None:
    """The harness used for a client-side interrupt, as the issue measured it."""
    kernel.run(TONES + "server = bk.local_server(engine='energy', workers=2)\nclient = bk.Client(server.url)\n"
               "long = np.concatenate([tone(0.5)] * 60)")  # 90 s of tones, sent in real time
    idle = kernel.resources()
    busy = kernel.start("t = await client.transcribe(long, 16000, speed=1.0, "
                        "on_final=lambda r: print('final', r['text'], flush=True))")
    kernel.wait_for_output(busy, "final")  # a final arrived: the session is streaming
    kernel.interrupt()
    interrupted = kernel.wait(busy)
    assert interrupted.error is not None  # the cell ended, with the interrupt
    finals, complete = kernel.value("[len(client.history[-1].finals), client.history[-1].complete]")
    assert finals >= 1 and complete is False  # what arrived is kept, marked incomplete
    assert settle(lambda: kernel.resources().established, idle.established) == idle.established


def test_interrupting_transcribe_many_keeps_what_finished_and_returns_promptly(kernel: Kernel, tmp_path) -> None:
    """8 items at concurrency 4, interrupted after the first 4 finished (the issue's case)."""
    checkpoint = tmp_path / "batch.jsonl"
    kernel.run(TONES + "server = bk.local_server(engine='energy', workers=4)\nclient = bk.Client(server.url)\n"
               "short = [{'id': f'short{i}', 'audio': tone(0.4), 'sr': 16000} for i in range(4)]\n"
               "long = [{'id': f'long{i}', 'audio': np.concatenate([tone(0.5)] * 40), 'sr': 16000} for i in range(4)]")
    idle = kernel.resources()
    busy = kernel.start(f"results = await bk.transcribe_many(short + long, concurrency=4, client=client, "
                        f"speed=1.0, progress=False, checkpoint={str(checkpoint)!r})")
    finished = settle(lambda: len(checkpoint.read_text().splitlines()) if checkpoint.exists() else 0, 4)
    assert finished == 4  # the four short items are done; the four long ones are streaming
    kernel.interrupt()
    interrupted = kernel.wait(busy)
    assert interrupted.error is not None
    kept = kernel.value("sorted(t.text for t in client.history if t.complete)")
    assert len(kept) == 4 and all(text.startswith("sound") for text in kept)  # the four that finished
    lines = checkpoint.read_text().splitlines()
    assert sorted(line.split('"key": "')[1].split('"')[0] for line in lines) == [f"short{i}" for i in range(4)]
    assert settle(lambda: kernel.resources().established, idle.established) == idle.established


def test_a_forgotten_await_says_to_use_await(kernel: Kernel) -> None:
    kernel.run("import bk_notebook as bk\nserver = bk.local_server(engine='energy')\nclient = bk.Client(server.url)")
    result = kernel.wait(kernel.start("t = client.transcribe(bk.sample_path())\nt.text"))
    assert result.error is not None and result.error["ename"] == "NotAwaitedError"
    assert "await client.transcribe" in result.error["evalue"]
    fixed = kernel.run("t = await client.transcribe(bk.sample_path(), speed=None)\nprint(t.complete, len(t))")
    assert fixed.raise_for_error().stdout.split() == ["True", "2"]
