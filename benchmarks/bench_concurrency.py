"""Many real-time streams from one process: CPU share of one core as N grows, and real-time keeping.

    python -m benchmarks.bench_concurrency [--streams 10 100 500 1000] [--seconds 20]

The client process is pinned to CPU 0 and the null server to CPU 1, so the CPU share is the
client's alone. A stream keeps real time when it finishes within 0.5 s of its audio's length.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time

import numpy as np

import bk_notebook as bk
from benchmarks.common import null_server, save, speechlike


async def one(url: str, pcm: np.ndarray, start_at: float) -> float:
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    began = time.monotonic()
    client = bk.Client(url, connect_timeout=60, reply_timeout=60, connect_retries=3)
    await client.transcribe(pcm, 16000, speed=1.0)
    return time.monotonic() - began


async def run(url: str, streams: int, seconds: float) -> dict[str, float]:
    pcm = speechlike(seconds)
    t0 = time.monotonic()
    # Spread the openings over one second, as independent users would.
    starts = [t0 + i / streams for i in range(streams)]
    cpu0, wall0 = time.process_time(), time.monotonic()
    durations = await asyncio.gather(*(one(url, pcm, s) for s in starts))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    lags = np.array(durations) - seconds
    return {
        "streams": streams,
        "audio_seconds_each": seconds,
        "cpu_share_of_one_core": round(cpu / wall, 3),
        "cpu_ms_per_stream_second": round(cpu / (streams * seconds) * 1000, 3),
        "lag_p50_s": round(float(np.percentile(lags, 50)), 3),
        "lag_max_s": round(float(lags.max()), 3),
        "all_real_time": bool((lags < 0.5).all()),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, nargs="+", default=[10, 100, 500, 1000])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    rows = []
    with null_server(cpu=1) as url:
        for n in args.streams:
            rows.append(asyncio.run(run(url, n, args.seconds)))
            print(rows[-1], flush=True)
    save("concurrency", {"rows": rows})


if __name__ == "__main__":
    main()
