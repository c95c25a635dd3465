"""Memory a closed widget keeps: five one-hour Players, each closed and deleted.

    python -m benchmarks.bench_widget_memory [--players 5] [--minutes 60]

Resident memory above the start after the players were built (each with its encoded copy, as when a
browser asked for the audio), closed, deleted and collected; the one-hour source array itself is
kept by the benchmark and counted (115 MB).  To compare with a version before a change, run the
same command with PYTHONPATH pointing at a checkout of that version (BENCHMARKS.md §14).
"""

from __future__ import annotations

import argparse
import gc

import numpy as np

from benchmarks.common import save


def main() -> None:
    import psutil

    from bk_notebook.widgets.player import Player

    parser = argparse.ArgumentParser()
    parser.add_argument("--players", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()

    def rss_mb() -> float:
        return psutil.Process().memory_info().rss / 2**20

    gc.collect()
    start = rss_mb()
    source = np.random.default_rng(0).integers(-3000, 3000, int(16000 * 60 * args.minutes), dtype=np.int16)
    for _ in range(args.players):
        player = Player([{"text": "a", "start": 0.0, "end": 1.0}], source.copy(), sr=16000)
        _ = player.encoded  # what a browser's request would have cached
        player.close()
        del player
    gc.collect()
    kept = round(rss_mb() - start, 1)
    source_mb = round(source.nbytes / 2**20, 1)
    print(f"{args.players} closed {args.minutes:g}-minute players: {kept} MB above the start "
          f"(of which the source array: {source_mb} MB)")
    save("widget_memory", {"players": args.players, "minutes": args.minutes, "rss_above_start_mb": kept,
                           "source_array_mb": source_mb})


if __name__ == "__main__":
    main()
