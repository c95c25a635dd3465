"""Client streaming cost: bk_notebook's client against the service sample's loop, same run, same null server.

    python -m benchmarks.bench_client [--minutes 10] [--profile]

Both stream the same audio unpaced to a null server in another process. Reported: audio
seconds per wall second, CPU seconds per audio hour, and their ratio; a floor (base64 plus
one websocket frame per chunk, nothing else) shows what is left to remove.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import io
import json
import pstats
import time
from collections.abc import Awaitable, Callable

import numpy as np

import bk_notebook as bk
from benchmarks.common import null_server, save, speechlike


async def bk_client(url: str, pcm: np.ndarray) -> None:
    """The default client: the null server acknowledges every chunk, so the send window is on."""
    t = await bk.Client(url).transcribe(pcm, 16000, speed=None)
    assert t.duration == len(pcm) / 16000 and t.complete


async def bk_client_no_window(url: str, pcm: np.ndarray) -> None:
    """The same without flow control (as before the send window): what the window costs."""
    t = await bk.Client(url, window_seconds=None).transcribe(pcm, 16000, speed=None)
    assert t.duration == len(pcm) / 16000 and t.complete


async def sample_loop(url: str, pcm: np.ndarray) -> None:
    """The official sample's loop, faithfully: websockets defaults, json.dumps and base64 per chunk,
    a receive loop polling wait_for(recv, 0.01); it stops at the audioStop reply instead of at the
    microphone's stop (the sample's own bug, which would lose the last final)."""
    import websockets

    data = pcm.tobytes()
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
        reply = json.loads(await ws.recv())
        sess_id = reply["bk"]["data"]["sess_id"]
        done = asyncio.Event()

        async def receive() -> None:
            while not done.is_set():
                try:
                    reply = await asyncio.wait_for(ws.recv(), timeout=0.01)
                    if reply is not None:
                        reply = json.loads(reply)
                        if "stt" in reply["bk"]["service"]:
                            if "type" in reply["bk"] and reply["bk"]["type"] == "audioStop":
                                done.set()
                            elif "data" in reply["bk"]:
                                pass
                except asyncio.TimeoutError:
                    pass

        async def stream() -> None:
            for i in range(0, len(data), 3200):
                bschunk = base64.b64encode(data[i:i + 3200])
                msg = {"bk": {"service": "stt", "sess_id": sess_id, "type": "audioStream",
                              "data": {"audio": bschunk.decode("utf-8")}}}
                await ws.send(json.dumps(msg))
            await ws.send(json.dumps({"bk": {"service": "stt", "sess_id": sess_id, "type": "audioStop"}}))

        await asyncio.gather(receive(), stream())


async def floor(url: str, pcm: np.ndarray) -> None:
    """base64 + one websocket frame per chunk out, each reply frame in, and nothing else."""
    from websockets.asyncio.client import connect

    data = pcm.tobytes()
    async with connect(url, compression=None) as ws:
        await ws.send('{"bk":{"service":"stt","type":"audioConn"}}')
        await ws.recv()

        async def drain() -> None:
            async for reply in ws:
                if "audioStop" in reply:
                    return

        reader = asyncio.create_task(drain())
        for i in range(0, len(data), 3200):
            await ws.send('{"bk":{"type":"audioStream","data":{"audio":"' + base64.b64encode(data[i:i + 3200]).decode()
                          + '"}}}')
        await ws.send('{"bk":{"type":"audioStop"}}')
        await reader


def measure(fn: Callable[[str, np.ndarray], Awaitable[None]], url: str, pcm: np.ndarray,
            profile: bool) -> dict[str, float | str]:
    profiler = cProfile.Profile() if profile else None
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    asyncio.run(fn(url, pcm))
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    audio = len(pcm) / 16000
    result: dict[str, float | str] = {
        "audio_s_per_wall_s": round(audio / wall, 1),
        "cpu_s_per_audio_hour": round(cpu / audio * 3600, 3),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
    }
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
        result["profile"] = out.getvalue()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    pcm = speechlike(args.minutes * 60)
    runs: dict[str, list[dict[str, float | str]]] = {"bk_notebook": [], "bk_notebook_no_window": [],
                                                     "sample_loop": [], "floor": []}
    with null_server() as url:
        for _ in range(args.repeat):  # interleaved, so drift hits all alike
            runs["bk_notebook"].append(measure(bk_client, url, pcm, False))
            runs["bk_notebook_no_window"].append(measure(bk_client_no_window, url, pcm, False))
            runs["sample_loop"].append(measure(sample_loop, url, pcm, False))
            runs["floor"].append(measure(floor, url, pcm, False))
        profiles = {name: measure(fn, url, pcm, True)["profile"] for name, fn in
                    (("bk_notebook", bk_client), ("sample_loop", sample_loop))} if args.profile else {}
    best = {name: min(r, key=lambda x: x["cpu_s"]) for name, r in runs.items()}
    result = {
        "audio_minutes": args.minutes,
        "best_of": args.repeat,
        "results": best,
        "cpu_ratio_sample_over_bk": round(best["sample_loop"]["cpu_s"] / best["bk_notebook"]["cpu_s"], 2),
        "cpu_ratio_bk_over_floor": round(best["bk_notebook"]["cpu_s"] / best["floor"]["cpu_s"], 2),
        "cpu_ratio_window_over_no_window": round(
            best["bk_notebook"]["cpu_s"] / best["bk_notebook_no_window"]["cpu_s"], 2),
        "profiles": profiles,
    }
    save("client", result)


if __name__ == "__main__":
    main()
