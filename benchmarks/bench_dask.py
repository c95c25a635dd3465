"""Offline corpus throughput on Dask: 1 vs 2 worker processes, against the engine's own decode rate.

    python -m benchmarks.bench_dask [--minutes 3] [--repeat 2] [--checkpoint-items 2000]

The corpus is the committed espeak-ng sentences (tests/fixtures/sentences) with faint noise, repeated
to --minutes of audio. Each Dask worker process starts its own embedded PocketSphinx server (engines in
threads) and takes one item at a time; a warm-up item per worker builds its server and decoder first.
Throughput is audio hours per wall hour for the whole batch (`transcribe_many(..., cluster=...)`,
unpaced). The limit: PocketSphinx's own decode rate per core (the engine fed the same corpus in 3200-byte
chunks in this process, audio seconds per CPU second), times the number of worker processes. The
checkpoint's overhead per item: the time of `Checkpoint.append` (JSON line + fsync) for a typical
record, against the time per item of the batch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import bk_notebook as bk
from benchmarks.common import ROOT, save
from bk_notebook.batch.checkpoint import Checkpoint, record_of

SENTENCES = ROOT / "tests" / "fixtures" / "sentences"


def corpus(minutes: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    clips = [bk.load_audio(path)[0] for path in sorted(SENTENCES.glob("*.flac"))]
    items: list[dict[str, Any]] = []
    seconds = 0.0
    while seconds < minutes * 60:
        clip = clips[len(items) % len(clips)]
        noisy = (clip + rng.standard_normal(len(clip)) * 0.003).astype(np.float32)
        items.append({"id": f"item-{len(items):05d}", "audio": noisy, "sr": 16000})
        seconds += len(clip) / 16000
    return items


def engine_rate(items: list[dict[str, Any]]) -> tuple[float, float]:
    """Audio seconds decoded per CPU second, and per wall second, by one PocketSphinx engine fed as the server does."""
    from bk_notebook.server.engines import PocketSphinxEngine

    engine = PocketSphinxEngine()
    audio = 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for item in items:
        pcm = bk.to_pcm16(item["audio"], 16000).tobytes()
        engine.reset()
        for i in range(0, len(pcm), 3200):
            engine.feed(pcm[i:i + 3200])
        engine.flush()
        audio += len(pcm) / 32000
    return audio / (time.process_time() - cpu0), audio / (time.perf_counter() - wall0)


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this worker process so far: its task threads, server and engines."""
    times = os.times()
    return times.user + times.system


def _runqueue_seconds() -> float:
    """Seconds this process's threads spent runnable but waiting for a CPU (Linux schedstat), summed.

    On a machine shared with other work, this is the time the load took from the workers.
    """
    total = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile, or no schedstat on this kernel
    return total / 1e9


def _warm_worker() -> str:
    """Start this worker's embedded server and decoder before the clock starts."""
    from bk_notebook.batch.cluster import WorkerSettings, transcribe_item

    settings = WorkerSettings(url=None, server_options=(("engine", "pocketsphinx"),),
                              transcribe_options={"speed": None})
    tone = np.sin(np.arange(16000) / 10).astype(np.float32) * 0.1
    return str(transcribe_item("warm", tone, 16000, settings)["key"])


def throughput(workers: int, items: list[dict[str, Any]]) -> dict[str, float]:
    from distributed import Client, LocalCluster

    audio = sum(len(item["audio"]) for item in items) / 16000
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as client:
        client.run(_warm_worker)
        cpu0 = sum(client.run(_cpu_seconds).values())
        wait0 = sum(client.run(_runqueue_seconds).values())
        t0 = time.perf_counter()
        results = asyncio.run(bk.transcribe_many(items, progress=False, cluster=client,
                                                 worker_server={"engine": "pocketsphinx"}, speed=None))
        wall = time.perf_counter() - t0
        cpu = sum(client.run(_cpu_seconds).values()) - cpu0
        waited = sum(client.run(_runqueue_seconds).values()) - wait0
    assert len(results) == len(items) and all(isinstance(r, bk.Transcript) for r in results)
    return {"workers": workers, "audio_s": round(audio, 1), "wall_s": round(wall, 2),
            "audio_hours_per_wall_hour": round(audio / wall, 2), "worker_cpu_s": round(cpu, 2),
            "audio_s_per_worker_cpu_s": round(audio / cpu, 2), "worker_runqueue_wait_s": round(waited, 2),
            "items": len(items)}


def checkpoint_cost(count: int) -> float:
    """Seconds per ``Checkpoint.append`` of a two-final record (JSON line + fsync)."""
    transcript = bk.Transcript(session_id="0123456789abcdef0123456789abcdef", duration=3.7)
    transcript.add_final("hello world this is a speech recognition test", 0.33, 3.03, sent=3.2)
    transcript.add_final("the weather is cold", 3.5, 5.0, sent=5.2)
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks") as tmp:
        with Checkpoint(Path(tmp) / "c.jsonl") as store:
            t0 = time.perf_counter()
            for i in range(count):
                store.append(record_of(f"item-{i:06d}", transcript))
            return (time.perf_counter() - t0) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3.0, help="audio in the corpus")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each worker count, interleaved; best kept")
    parser.add_argument("--checkpoint-items", type=int, default=2000)
    args = parser.parse_args()
    items = corpus(args.minutes)
    rate, rate_wall = engine_rate(items[: max(1, len(items) // 4)])
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for _ in range(args.repeat):
        for workers in (1, 2):
            runs[workers].append(throughput(workers, items))
    best = {w: max(r, key=lambda row: row["audio_hours_per_wall_hour"]) for w, r in runs.items()}
    per_item = best[1]["wall_s"] / len(items)
    append = checkpoint_cost(args.checkpoint_items)
    save("dask", {
        "load_average_before": os.getloadavg(),
        "engine_audio_s_per_cpu_s": round(rate, 2),
        "engine_audio_s_per_wall_s_same_load": round(rate_wall, 2),
        "limit_1_worker": round(rate, 2), "limit_2_workers": round(2 * rate, 2),
        "runs": runs, "best": best,
        "speedup_2_over_1": round(best[2]["audio_hours_per_wall_hour"] / best[1]["audio_hours_per_wall_hour"], 2),
        "fraction_of_limit": {w: round(best[w]["audio_hours_per_wall_hour"] / (w * rate), 2) for w in (1, 2)},
        "fraction_of_limit_at_the_same_load": {
            w: round(best[w]["audio_hours_per_wall_hour"] / (w * rate_wall), 2) for w in (1, 2)},
        "engine_cpu_over_pipeline_cpu": {
            w: round(best[w]["audio_s_per_worker_cpu_s"] / rate, 2) for w in (1, 2)},
        "checkpoint_append_ms": round(append * 1000, 3),
        "checkpoint_share_of_item_time_1_worker": round(append / per_item, 4),
    })


if __name__ == "__main__":
    main()
