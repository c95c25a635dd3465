"""What a noisy neighbour costs other sessions, and what an engine costs in memory.

    python -m benchmarks.bench_server_noise [--noise 300] [--paced 2] [--seconds 30] [--processes]

The server runs as `bk-notebook serve` in its own process (threads by default, --processes for
engines in worker processes).  `--paced` clients stream the bundled sample tiled to `--seconds`
at real time with the raw protocol and time-stamp every reply (the server answers each 100 ms
chunk once it is decoded); first alone, then while one more client streams `--noise` seconds of
random int16 noise unpaced.  Reported per phase: the longest pause between two replies a paced
client saw, and its final latency (arrival minus the moment the utterance's end was sent).
Memory: resident memory of the server and its engine processes, idle and with every engine built.

    python -m benchmarks.bench_server_noise --turns [--threads]

Fairness: the same two phases' second half (paced clients beside the greedy one) on a server whose
engine calls all run at once (`--decode-slots 64 --no-admission`, as before turns existed) and on
one with the default turns (one call per core, in arrival order), in one run.

    python -m benchmarks.bench_server_noise --longest-call 300

Engine alone: the longest single PocketSphinx call (a chunk's feed, or the flush) on that much
unpaced noise, with the default max_utterance_seconds (20 s) and without a cut (1e9 s).  In
threads that call holds the GIL: every other session and the event loop wait for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import numpy as np
from websockets.asyncio.client import connect

import bk_notebook as bk
from benchmarks.bench_server import Server
from benchmarks.common import message, save, send_at_real_time


def rss_mb(server: Server) -> float:
    pids = [server.proc.pid]
    for task in os.listdir(f"/proc/{server.proc.pid}/task"):
        with open(f"/proc/{server.proc.pid}/task/{task}/children") as f:
            pids += [int(p) for p in f.read().split()]
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    return round(total / 1024, 1)


async def open_session(ws: object, refused: list[int]) -> str:
    """audioConn, retried every half second while the server refuses it (as bk.Client retries)."""
    for _ in range(60):
        await ws.send(message("audioConn"))  # type: ignore[attr-defined]
        reply = json.loads(await ws.recv())["bk"]  # type: ignore[attr-defined]
        if reply.get("status") == 200:
            return str(reply["data"]["sess_id"])
        refused[0] += 1
        await asyncio.sleep(0.5)
    raise RuntimeError("audioConn refused for 30 s")


async def paced(url: str, pcm: bytes, delay: float) -> dict[str, float]:
    await asyncio.sleep(delay)
    refused = [0]
    async with connect(url) as ws:
        sess_id = await open_session(ws, refused)
        t0 = time.monotonic()
        arrivals: list[float] = []
        latencies: list[float] = []

        async def receive() -> None:
            while True:
                reply = json.loads(await ws.recv())["bk"]
                now = time.monotonic()
                if reply["type"] == "audioStop":
                    return
                arrivals.append(now)
                if "final" in reply.get("data", {}):
                    latencies.append(now - (t0 + reply["data"]["end"]))

        receiver = asyncio.create_task(receive())
        await send_at_real_time(ws, sess_id, pcm, t0)
        await asyncio.wait_for(receiver, 600)
    gaps = np.diff([t0, *arrivals])
    return {"max_pause_s": float(gaps.max()), "latencies": latencies,  # type: ignore[dict-item]
            "refused": refused[0]}


async def noisy(url: str, seconds: float, started: asyncio.Event) -> dict[str, float]:
    noise = np.random.default_rng(0).integers(-32768, 32767, int(16000 * seconds), dtype=np.int16).tobytes()
    async with connect(url) as ws:
        await ws.send(message("audioConn"))
        sess_id = json.loads(await ws.recv())["bk"]["data"]["sess_id"]
        started.set()
        t0 = time.monotonic()
        for offset in range(0, len(noise), 3200):
            await ws.send(message("audioStream", sess_id, noise[offset:offset + 3200]))
        await ws.send(message("audioStop", sess_id))
        finals = refused = 0
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 900))["bk"]
            finals += "final" in reply.get("data", {})
            refused += reply["status"] == 400
            if reply["type"] == "audioStop":
                break
    return {"noise_s": seconds, "noise_wall_s": round(time.monotonic() - t0, 1), "noise_finals": finals,
            "noise_refused_chunks": refused}


def summary(results: list[dict[str, float]]) -> dict[str, float]:
    latencies = np.array([x for r in results for x in r["latencies"]])  # type: ignore[union-attr]
    return {"max_pause_s": round(max(r["max_pause_s"] for r in results), 2),
            "latency_p50_s": round(float(np.percentile(latencies, 50)), 2),
            "latency_p95_s": round(float(np.percentile(latencies, 95)), 2),
            "latency_max_s": round(float(latencies.max()), 2),
            "audioconn_refusals": int(sum(r.get("refused", 0) for r in results))}


async def phase(url: str, pcm: bytes, n: int, noise: float) -> dict[str, object]:
    started = asyncio.Event()
    noise_task = asyncio.create_task(noisy(url, noise, started)) if noise else None
    if noise_task:
        await started.wait()
        await asyncio.sleep(1.0)  # the noise is flowing
    results = await asyncio.gather(*(paced(url, pcm, 0.25 * i) for i in range(n)))
    out: dict[str, object] = summary(results)
    if noise_task:
        out.update(await noise_task)
    return out


def longest_call(seconds: float, max_utterance: float) -> dict[str, float]:
    from bk_notebook.server.engines import PocketSphinxEngine

    engine = PocketSphinxEngine(max_utterance_seconds=max_utterance)
    noise = np.random.default_rng(0).integers(-32768, 32767, int(16000 * seconds), dtype=np.int16).tobytes()
    longest, started = 0.0, time.perf_counter()
    for offset in range(0, len(noise), 3200):
        t = time.perf_counter()
        engine.feed(noise[offset:offset + 3200])
        longest = max(longest, time.perf_counter() - t)
    t = time.perf_counter()
    engine.flush()
    flush = time.perf_counter() - t
    return {"max_utterance_s": max_utterance, "longest_feed_s": round(longest, 3), "flush_s": round(flush, 3),
            "total_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--longest-call", type=float, default=0.0, help="seconds of noise for the engine alone")
    parser.add_argument("--noise", type=float, default=300.0, help="seconds of noise, sent unpaced")
    parser.add_argument("--paced", type=int, default=2, help="real-time clients")
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per real-time client")
    parser.add_argument("--processes", action="store_true")
    parser.add_argument("--turns", action="store_true", help="compare the server without and with decode turns")
    parser.add_argument("--threads", action="store_true", help="with --turns: engines in threads (serve --threads)")
    args = parser.parse_args()
    if args.longest_call:
        rows = [longest_call(args.longest_call, m) for m in (20.0, 1e9)]
        for row in rows:
            print(row, flush=True)
        save("engine_longest_call", {"noise_s": args.longest_call, "rows": rows})
        return
    sample = bk.to_pcm16(bk.sample_path())
    pcm = np.tile(sample, int(np.ceil(args.seconds * 16000 / len(sample))))[: int(args.seconds * 16000)].tobytes()
    workers = args.paced + 1
    if args.turns:
        compare_turns(args, pcm, workers)
        return
    server = Server(workers, args.processes)
    try:
        idle = rss_mb(server)
        asyncio.run(phase(server.url, pcm[:32000], workers, 0))  # warm: every engine built
        built = rss_mb(server)
        memory = {"rss_idle_mb": idle, "rss_with_engines_mb": built,
                  "mb_per_engine": round((built - idle) / workers, 1)}
        print(memory, flush=True)
        alone = asyncio.run(phase(server.url, pcm, args.paced, 0))
        print("alone", alone, flush=True)
        with_noise = asyncio.run(phase(server.url, pcm, args.paced, args.noise))
        print("with noise", with_noise, flush=True)
    finally:
        server.stop()
    name = "server_noise_processes" if args.processes else "server_noise"
    save(name, {"processes": args.processes, "paced_clients": args.paced, "paced_seconds": args.seconds,
                **memory, "alone": alone, "with_noise": with_noise})


def compare_turns(args: argparse.Namespace, pcm: bytes, workers: int) -> None:
    """The paced clients beside the greedy one, without turns (every call at once) and with them, in one run."""
    rows = {}
    mode = ("--threads",) if args.threads else ()
    for name, options in (("without turns", ("--decode-slots", "64", "--no-admission")), ("with turns", ())):
        server = Server(workers, args.processes, (*mode, *options))
        try:
            asyncio.run(phase(server.url, pcm[:32000], workers, 0))  # warm: every engine built
            rows[name] = asyncio.run(phase(server.url, pcm, args.paced, args.noise))
            print(name, rows[name], flush=True)
        finally:
            server.stop()
    before, after = rows["without turns"]["latency_p95_s"], rows["with turns"]["latency_p95_s"]
    ratio = round(float(before) / max(float(after), 1e-3), 2)  # type: ignore[arg-type]
    print(f"paced p95 final latency beside a greedy client: {before} s without turns, {after} s with: {ratio}x")
    save("server_turns_threads" if args.threads else "server_turns",
         {"processes": not args.threads, "paced_clients": args.paced, "paced_seconds": args.seconds,
          "noise_s": args.noise, **rows, "p95_ratio": ratio})


if __name__ == "__main__":
    main()
