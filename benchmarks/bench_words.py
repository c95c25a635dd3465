"""Word timestamps and a vocabulary on Whisper base: what they cost and what they buy.

    python -m benchmarks.bench_words [--repeat 3] [--live-seconds 28] [--live-repeat 2] [--skip-live] [--only-live]

- CPU per audio second of the final decodes, word timestamps off and on: the engine alone
  (``WhisperEngine``, finals only) over the suite's English clips and the vocabulary clips, the two
  settings interleaved ``--repeat`` times in one process (the median of each, and their ratio);
- first-final latency with word timestamps on and off: one live session at real time through a
  server of its own process (the English clips back to back), the final's arrival minus the moment
  its ``end`` was sent, the first final's and p50/p95 of all; off and on alternate ``--live-repeat``
  times, so that a load that changes during the run falls on both;
- words right on domain terms (``tests/fixtures/vocabulary``: 10 terms in 5 sentences), without a
  vocabulary, with the server's ``prompt``, with ``hotwords``, and with the prompt sent per session.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import bk_notebook as bk
from benchmarks.bench_engines import EngineServer, live_session, manifest
from benchmarks.common import ROOT, save

FIXTURES = ROOT / "tests" / "fixtures"
VOCABULARY = FIXTURES / "vocabulary"
PROMPT = "Kubernetes, Grafana, LoRA, GPU, Wahyuningsih, PyTorch, Postgres, FastAPI, Yogyakarta, Jupyter."


def vocabulary_clips() -> list[tuple[Path, list[str]]]:
    with open(VOCABULARY / "manifest.csv", newline="") as f:
        return [(VOCABULARY / row["file"], row["terms"].split()) for row in csv.DictReader(f)]


def normalised_words(text: str) -> set[str]:
    return set("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())


def decode_cpu(engines: dict[bool, Any], clips: list[bytes], repeat: int) -> dict[str, Any]:
    """Process CPU seconds per audio second of each engine over the clips, interleaved ``repeat`` times."""
    audio_s = sum(len(c) for c in clips) / 32000
    runs: dict[bool, list[float]] = {False: [], True: []}
    walls: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeat):
        for words, engine in engines.items():
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for pcm in clips:
                engine.feed(pcm)
                engine.flush()
            runs[words].append((time.process_time() - cpu0) / audio_s)
            walls[words].append((time.perf_counter() - wall0) / audio_s)
    off, on = statistics.median(runs[False]), statistics.median(runs[True])
    return {"audio_s": round(audio_s, 1), "repeat": repeat,
            "cpu_s_per_audio_s_without": round(off, 3), "cpu_s_per_audio_s_with": round(on, 3),
            "ratio_with_over_without": round(on / off, 3),
            "wall_s_per_audio_s_without": round(statistics.median(walls[False]), 3),
            "wall_s_per_audio_s_with": round(statistics.median(walls[True]), 3),
            "runs_without": [round(x, 3) for x in runs[False]], "runs_with": [round(x, 3) for x in runs[True]]}


def terms_right(engine: Any, prompt: str | None = None) -> dict[str, Any]:
    right, total, texts = 0, 0, []
    for path, terms in vocabulary_clips():
        if prompt is not None:
            engine.set_prompt(prompt)
        finals = engine.feed(bk.to_pcm16(path).tobytes()) + engine.flush()
        text = " ".join(f.text for f in finals)
        heard = normalised_words(text)
        right += sum(term.lower() in heard for term in terms)
        total += len(terms)
        texts.append(text)
    return {"terms_right": right, "terms": total, "texts": texts}


def live_latency(words: bool, pcm: bytes) -> dict[str, Any]:
    server = EngineServer({"engine": "whisper", "model": "base", "language": "en", "partials": False,
                           "word_timestamps": words, "workers": 1, "processes": False})
    try:
        cpu0 = server.cpu()
        latencies = asyncio.run(live_session(server.url, pcm, 0.0))
        cpu = server.cpu() - cpu0
    finally:
        server.stop()
    return {"finals": len(latencies), "first_final_latency_s": round(latencies[0], 2) if latencies else None,
            "final_latency_p50_s": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
            "final_latency_p95_s": round(float(np.percentile(latencies, 95)), 2) if latencies else None,
            "server_cpu_s_per_audio_s": round(cpu / (len(pcm) / 32000), 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--live-seconds", type=float, default=28.0)
    parser.add_argument("--live-repeat", type=int, default=2)
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--only-live", action="store_true", help="skip the CPU and vocabulary measurements")
    parser.add_argument("--clips", type=int, default=0, help="use only the first N English clips (0: all)")
    args = parser.parse_args()
    from bk_notebook.server.engines.whisper import WhisperEngine

    english = [bk.to_pcm16(path).tobytes() for path, _ in manifest(FIXTURES / "sentences")]
    vocabulary = [bk.to_pcm16(path).tobytes() for path, _ in vocabulary_clips()]
    clips = (english + vocabulary)[: args.clips or None]
    result: dict[str, Any] = {"load_average_before": os.getloadavg()}
    if not args.only_live:
        engines = {words: WhisperEngine(language="en", partials=False, word_timestamps=words)
                   for words in (False, True)}
        result["decode_cpu"] = decode_cpu(engines, clips, args.repeat)
        print(result["decode_cpu"], file=sys.stderr, flush=True)
        result["vocabulary"] = {
            "none": terms_right(engines[True]),
            "server_prompt": terms_right(WhisperEngine(language="en", partials=False, prompt=PROMPT)),
            "server_hotwords": terms_right(WhisperEngine(language="en", partials=False, hotwords=PROMPT)),
            "session_prompt": terms_right(engines[True], prompt=PROMPT),
        }
        print({k: v["terms_right"] for k, v in result["vocabulary"].items()}, file=sys.stderr, flush=True)
    if not args.skip_live:
        pcm = np.concatenate([np.frombuffer(c, dtype=np.int16) for c in english])
        live_pcm = pcm[: int(args.live_seconds * 16000)].tobytes()
        result["live_audio_s"] = round(len(live_pcm) / 32000, 1)
        runs: dict[str, list[dict[str, Any]]] = {"without_words": [], "with_words": []}
        for _ in range(args.live_repeat):
            for words in (False, True):
                runs["with_words" if words else "without_words"].append(live_latency(words, live_pcm))
                print(runs, file=sys.stderr, flush=True)
        result["live"] = runs
    result["load_average_after"] = os.getloadavg()
    save("words", result)


if __name__ == "__main__":
    main()
