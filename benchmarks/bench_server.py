"""Local server capacity on this machine: real-time PocketSphinx sessions, latency, CPU, refusals.

    python -m benchmarks.bench_server [--sessions 1 2 4 6 8] [--workers 4] [--processes]

The server runs as `bk-notebook serve` in its own process; N clients stream the bundled sample
(two utterances, 8.4 s) at real time, started 0.25 s apart. Latency is the wall time from the
moment the end of an utterance was sent to its final arriving (`end` from the final's data).
Then, with --workers W, W sessions run and one more is attempted: it must be refused with
"worker not available" while the running ones keep their latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time

import numpy as np

import bk_notebook as bk
from benchmarks.common import ROOT, save


class Server:
    def __init__(self, workers: int, processes: bool = False, options: tuple[str, ...] = (),
                 engine: str = "pocketsphinx") -> None:
        extra = ["--processes", *options] if processes else list(options)
        self.proc = subprocess.Popen([sys.executable, "-m", "bk_notebook.cli", "serve", "--port", "0",
                                      "--engine", engine, "--workers", str(workers), *extra],
                                     cwd=ROOT, stderr=subprocess.PIPE, text=True)
        line = ""
        while "listening on" not in line:
            line = self.proc.stderr.readline()
        self.url = re.search(r"ws://\S+/v1/prod/stream", line).group(0)

    def cpu_seconds(self) -> float:
        """CPU of the server and of its engine processes (children)."""
        pids = [self.proc.pid]
        for task in os.listdir(f"/proc/{self.proc.pid}/task"):  # engine processes are children of threads
            with open(f"/proc/{self.proc.pid}/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
        total = 0.0
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


async def session(url: str, pcm: np.ndarray, delay: float, retries: int = 1) -> list[float]:
    await asyncio.sleep(delay)
    latencies: list[float] = []
    client = bk.Client(url, connect_retries=retries, retry_backoff=0.2)
    t0 = time.monotonic()

    def on_final(record: dict) -> None:
        latencies.append(time.monotonic() - (t0 + record["end"]))

    await client.transcribe(pcm, 16000, speed=1.0, on_final=on_final)
    return latencies


async def load(url: str, n: int, pcm: np.ndarray) -> list[float]:
    results = await asyncio.gather(*(session(url, pcm, 0.25 * i) for i in range(n)))
    return [x for r in results for x in r]


def stats(latencies: list[float]) -> dict[str, float]:
    a = np.array(latencies)
    return {"finals": len(a), "latency_p50_s": round(float(np.percentile(a, 50)), 3),
            "latency_p95_s": round(float(np.percentile(a, 95)), 3)}


async def at_capacity(url: str, workers: int, pcm: np.ndarray) -> dict[str, object]:
    running = [asyncio.create_task(session(url, pcm, 0.1 * i)) for i in range(workers)]
    await asyncio.sleep(0.1 * workers + 0.5)
    refused = ""
    try:
        await bk.Client(url, connect_retries=1).transcribe(pcm[:16000], 16000, speed=None)
    except bk.WorkerUnavailable as exc:
        refused = str(exc)
    latencies = [x for r in await asyncio.gather(*running) for x in r]
    return {"workers": workers, "extra_session_refused": bool(refused), **stats(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 6, 8])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--processes", action="store_true", help="engines in worker processes")
    args = parser.parse_args()
    pcm = bk.to_pcm16(bk.sample_path())
    seconds = len(pcm) / 16000
    rows = []
    server = Server(max(args.sessions), args.processes)
    try:
        asyncio.run(load(server.url, max(args.sessions), pcm))  # warm: every engine built before measuring
        for n in args.sessions:
            cpu0, wall0 = server.cpu_seconds(), time.monotonic()
            latencies = asyncio.run(load(server.url, n, pcm))
            cpu, wall = server.cpu_seconds() - cpu0, time.monotonic() - wall0
            rows.append({"sessions": n, **stats(latencies), "server_cpu_share_of_one_core": round(cpu / wall, 2),
                         "server_cpu_s_per_audio_s": round(cpu / (n * seconds), 3)})
            print(rows[-1], flush=True)
    finally:
        server.stop()
    server = Server(args.workers, args.processes)
    try:
        asyncio.run(load(server.url, args.workers, pcm))  # warm: every engine built
        capacity = asyncio.run(at_capacity(server.url, args.workers, pcm))
        print(capacity, flush=True)
    finally:
        server.stop()
    name = "server_processes" if args.processes else "server"
    save(name, {"audio_seconds": round(seconds, 2), "processes": args.processes, "rows": rows, "capacity": capacity})


if __name__ == "__main__":
    main()
