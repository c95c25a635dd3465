"""The local server's engines side by side: PocketSphinx, Whisper tiny.en, Whisper base, in one run.

    python -m benchmarks.bench_engines [--sessions 1 2 4] [--live-seconds 28] [--engines ...]

Each engine runs in a server of its own process (``bk.local_server`` in a subprocess, so its RSS and
CPU are its own; PocketSphinx in threads, as Whisper).  For each:

- start-up: the subprocess started to its server listening, and (Whisper) the model load as the
  server logs it (joining the cached parts, hashing them, loading, one warm-up decode);
- words right and word error rate (jiwer, lower case, punctuation removed) on the suite's fixtures:
  ``tests/fixtures/sentences`` (synthetic English), and ``tests/fixtures/indonesian`` (synthetic
  Indonesian: base with ``language="id"``; PocketSphinx only knows English); sent at ``speed=None``,
  one file at a time; CPU seconds of the server per audio second over those files;
- RSS of the server after that;
- live: 1, 2, 4 sessions at real time, each streaming the English fixtures back to back (about
  28 s), with partials and (Whisper) without: final latency after the end of speech (the
  final's arrival minus the moment its ``end`` was sent) p50/p95, and server CPU per audio second.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from websockets.asyncio.client import connect

import bk_notebook as bk
from benchmarks.common import ROOT, message, save, send_at_real_time

FIXTURES = ROOT / "tests" / "fixtures"
ENGINES: dict[str, dict[str, Any]] = {
    "pocketsphinx": {"engine": "pocketsphinx"},
    "whisper-tiny.en": {"engine": "whisper", "model": "tiny.en", "language": "en"},
    "whisper-base": {"engine": "whisper", "model": "base"},  # language auto: Indonesian or English
}
SERVER = r"""
import json, sys, time
import bk_notebook as bk
options = json.loads(sys.argv[1])
began = time.perf_counter()
server = bk.local_server(**options)
load = None
if server.engine == "whisper":
    from bk_notebook.server.engines.decoder import _shared
    load = _shared[options.get("model", "base")].load_seconds
print(json.dumps({"url": server.url, "started_s": time.perf_counter() - began, "model_load_s": load}), flush=True)
sys.stdin.read()
"""


class EngineServer:
    def __init__(self, options: dict[str, Any]) -> None:
        began = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(options)], cwd=ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.url: str = info["url"]
        self.process_start_to_listening_s = round(time.perf_counter() - began, 2)
        self.model_load_s = None if info["model_load_s"] is None else round(info["model_load_s"], 2)
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        procs = [self.ps, *self.ps.children(recursive=True)]
        return sum(p.cpu_times().user + p.cpu_times().system for p in procs)

    def rss_mb(self) -> float:
        procs = [self.ps, *self.ps.children(recursive=True)]
        return round(sum(p.memory_info().rss for p in procs) / 2**20, 1)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


def manifest(folder: Path) -> list[tuple[Path, str]]:
    with open(folder / "manifest.csv", newline="") as f:
        return [(folder / row["file"], row["text"]) for row in csv.DictReader(f)]


def normalise(text: str) -> str:
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())


def accuracy(url: str, pairs: list[tuple[Path, str]], server: EngineServer) -> dict[str, Any]:
    import jiwer

    client = bk.Client(url)
    cpu0 = server.cpu()
    audio = 0.0
    hypotheses = []
    for path, _ in pairs:
        t = asyncio.run(client.transcribe(path, speed=None))
        audio += t.duration
        hypotheses.append(t.text)
    cpu = server.cpu() - cpu0
    out = jiwer.process_words([normalise(r) for _, r in pairs], [normalise(h) for h in hypotheses])
    return {"words_right": out.hits, "reference_words": sum(len(normalise(r).split()) for _, r in pairs),
            "wer": round(out.wer, 3), "cpu_s_per_audio_s": round(cpu / audio, 3), "audio_s": round(audio, 1),
            "hypotheses": hypotheses}


async def live_session(url: str, pcm: bytes, delay: float) -> list[float]:
    """Stream ``pcm`` at real time; return each final's latency after the end of its speech."""
    await asyncio.sleep(delay)
    async with connect(url) as ws:
        await ws.send(message("audioConn"))
        sess_id = json.loads(await ws.recv())["bk"]["data"]["sess_id"]
        t0 = time.monotonic()
        latencies: list[float] = []

        async def receive() -> None:
            while True:
                reply = json.loads(await ws.recv())["bk"]
                if reply["type"] == "audioStop":
                    return
                data = reply.get("data") or {}
                if "final" in data:
                    latencies.append(time.monotonic() - (t0 + data["end"]))

        receiver = asyncio.create_task(receive())
        await send_at_real_time(ws, sess_id, pcm, t0)
        await asyncio.wait_for(receiver, 600)
        return latencies


def live(server: EngineServer, pcm: bytes, sessions: int) -> dict[str, Any]:
    async def run() -> list[list[float]]:
        # Staggered by 0.37 s: sessions whose utterances all end together are the worst case, not the usual one.
        return list(await asyncio.gather(*(live_session(server.url, pcm, 0.37 * i) for i in range(sessions))))

    cpu0 = server.cpu()
    results = asyncio.run(run())
    cpu = server.cpu() - cpu0
    latencies = np.array([x for r in results for x in r])
    return {"sessions": sessions, "finals": len(latencies),
            "final_latency_p50_s": round(float(np.percentile(latencies, 50)), 2) if len(latencies) else None,
            "final_latency_p95_s": round(float(np.percentile(latencies, 95)), 2) if len(latencies) else None,
            "cpu_s_per_audio_s": round(cpu / (sessions * len(pcm) / 32000), 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--sessions", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--live-seconds", type=float, default=28.0, help="audio per live session (at most ~28)")
    args = parser.parse_args()
    english, indonesian = manifest(FIXTURES / "sentences"), manifest(FIXTURES / "indonesian")
    clips = [bk.to_pcm16(path) for path, _ in english]
    live_pcm = np.concatenate(clips)[: int(args.live_seconds * 16000)].tobytes()
    rows: dict[str, Any] = {}
    for name in args.engines:
        options = {**ENGINES[name], "workers": max([4, *args.sessions]), "processes": False}
        row: dict[str, Any] = {}
        server = EngineServer(options)
        try:
            row["process_start_to_listening_s"] = server.process_start_to_listening_s
            row["model_load_s"] = server.model_load_s
            row["english"] = accuracy(server.url, english, server)
            if name == "whisper-base":  # the same model, told the language: a server of its own costs no reload
                row["indonesian_auto"] = accuracy(server.url, indonesian, server)
            row["rss_mb"] = server.rss_mb()
            row["live_with_partials"] = [live(server, live_pcm, n) for n in args.sessions]
        finally:
            server.stop()
        if name == "whisper-base":
            server = EngineServer({**options, "language": "id"})
            try:
                row["indonesian_language_id"] = accuracy(server.url, indonesian, server)
            finally:
                server.stop()
        if name == "pocketsphinx":
            server = EngineServer(options)
            try:
                row["indonesian"] = accuracy(server.url, indonesian, server)
            finally:
                server.stop()
        if ENGINES[name]["engine"] == "whisper" and args.sessions:
            server = EngineServer({**options, "partials": False})
            try:
                row["live_finals_only"] = [live(server, live_pcm, n) for n in args.sessions]
            finally:
                server.stop()
        rows[name] = row
        print(name, json.dumps(row, indent=1), file=sys.stderr, flush=True)
    save("engines", {"load_average": os.getloadavg(), "live_audio_s": len(live_pcm) / 32000, "engines": rows})


if __name__ == "__main__":
    main()
