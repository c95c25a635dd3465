"""The sound card's conversion path: CPU per audio hour and memory against recording length.

    python -m benchmarks.bench_soundcard [--minutes 10] [--curve 1 10 30]

What ``SoundCard``'s converter thread does with each 100 ms block of 44.1 kHz stereo float32
(``BlockConverter`` then ``Rechunker``), against the baseline of keeping the recording and converting
it at the end with ``bk.to_pcm16`` (what a script that records first and transcribes after does).
Both run in this process, interleaved, on the same synthetic audio; no sound card is needed.
Part 1: CPU seconds per audio hour (best of ``--repeat``), and the share of one core that live
capture costs.  Part 2: peak traced allocations (numpy's, via tracemalloc) for recordings of each
length in ``--curve`` minutes: the live path should stay flat, the baseline grows.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

import bk_notebook as bk
from benchmarks.common import save
from bk_notebook.audio.live import Rechunker
from bk_notebook.audio.pcm import BlockConverter

RATE = 44100
BLOCK = RATE // 10


def _block() -> np.ndarray:
    return (np.random.default_rng(0).standard_normal((BLOCK, 2)) * 0.1).astype(np.float32)


def live(minutes: float) -> int:
    """The converter thread's work: block in, 3200-byte chunks out, nothing kept."""
    block, converter, chunker, produced = _block(), BlockConverter(RATE, 2), Rechunker(), 0
    for _ in range(int(minutes * 600)):
        produced += sum(len(c) for c in chunker.push(converter.convert(block)))
    produced += sum(len(c) for c in chunker.push(converter.flush())) + len(chunker.flush())
    return produced


def record_then_convert(minutes: float) -> int:
    """Baseline: keep every block, convert the whole recording at the end."""
    block = _block()
    kept = [block.copy() for _ in range(int(minutes * 600))]
    return bk.to_pcm16(np.concatenate(kept), RATE).nbytes


def cpu_seconds(fn: Callable[[float], int], minutes: float) -> float:
    t = time.process_time()
    fn(minutes)
    return time.process_time() - t


def peak_mb(fn: Callable[[float], int], minutes: float) -> float:
    tracemalloc.start()
    try:
        fn(minutes)
        return round(tracemalloc.get_traced_memory()[1] / 2**20, 2)
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0, help="audio for the CPU comparison")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--curve", type=float, nargs="+", default=[1, 10, 30], help="minutes for the memory curve")
    args = parser.parse_args()

    best = {"live": float("inf"), "record_then_convert": float("inf")}
    for _ in range(args.repeat):  # interleaved, so that a busy moment of the machine hits both
        best["live"] = min(best["live"], cpu_seconds(live, args.minutes))
        best["record_then_convert"] = min(best["record_then_convert"], cpu_seconds(record_then_convert, args.minutes))
    per_hour = {k: round(v * 60 / args.minutes, 2) for k, v in best.items()}
    curve = [
        {"minutes": m, "live_peak_mb": peak_mb(live, m), "record_then_convert_peak_mb": peak_mb(record_then_convert, m)}
        for m in args.curve
    ]
    save("bench_soundcard", {
        "audio_minutes": args.minutes,
        "cpu_s_per_audio_hour": per_hour,
        "live_share_of_one_core": round(per_hour["live"] / 3600, 5),
        "cpu_ratio_live_over_baseline": round(per_hour["live"] / per_hour["record_then_convert"], 2),
        "memory_curve": curve,
    })


if __name__ == "__main__":
    main()
