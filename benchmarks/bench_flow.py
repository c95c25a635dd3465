"""Flow control end to end: a long file unpaced through the local server, against the engine's own decode time.

    python -m benchmarks.bench_flow [--minutes 10] [--engine pocketsphinx]
    python -m benchmarks.bench_flow --minutes 10 --engine whisper [--language en]

For ``--engine whisper`` a third figure joins them: faster-whisper's own offline batched
transcription (``BatchedInferencePipeline``, the same model files, temperature 0, beam 1) of the
same audio, the fastest way to transcribe a whole file offline (the no-window run is skipped).

The floor is the recogniser alone: the same engine fed the same audio in 3200-byte chunks in
this process, then flushed, with no socket.  The client then transcribes the same audio at
``speed=None`` through ``bk.local_server()``: with the send window (the default) and without
it (``window_seconds=None``, as before flow control).  Reported: wall seconds, the ratio to the
floor, and whether the result is complete with every final.  CPU seconds are the process's,
server and engine included (the client's own cost is measured by ``bench_client``).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

import bk_notebook as bk
from benchmarks.common import save
from bk_notebook.audio.convert import CHUNK_BYTES
from bk_notebook.server.engines import engine_factory


def long_audio(minutes: float) -> np.ndarray:
    sample = bk.to_pcm16(bk.sample_path())
    return np.tile(sample, int(np.ceil(minutes * 60 * 16000 / len(sample))))[: int(minutes * 60 * 16000)]


def engine_alone(engine: str, pcm: np.ndarray, **options: str) -> dict[str, float]:
    decoder = engine_factory(engine, **options)()
    data = pcm.tobytes()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    finals = 0
    for at in range(0, len(data), CHUNK_BYTES):
        finals += sum(1 for e in decoder.feed(data[at : at + CHUNK_BYTES]) if isinstance(e, bk.protocol.Final))
    finals += sum(1 for e in decoder.flush() if isinstance(e, bk.protocol.Final))
    return {"wall_s": round(time.perf_counter() - wall0, 4), "cpu_s": round(time.process_time() - cpu0, 4),
            "finals": finals}


def through_server(engine: str, pcm: np.ndarray, window: float | None,
                   **options: str) -> dict[str, float | bool | int]:
    with bk.local_server(engine=engine, workers=1, **options) as server:
        client = bk.Client(server.url, window_seconds=window)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        try:
            t = asyncio.run(client.transcribe(pcm, 16000, speed=None))
        except bk.BkError as exc:  # without the window a long file outruns the server's queue bound
            kept = exc.transcript
            return {"error": f"{type(exc).__name__}: {exc}", "wall_s": round(time.perf_counter() - wall0, 2),
                    "finals_kept": len(kept) if kept is not None else 0}
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "finals": len(t), "complete": t.complete}


def faster_whisper_batched(pcm: np.ndarray, model: str, language: str) -> dict[str, float]:
    """The same audio through faster-whisper's batched offline pipeline, the same model files."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from bk_notebook.server.engines.weights import model_folder

    whisper = WhisperModel(str(model_folder(model)), device="cpu", compute_type="int8", local_files_only=True)
    pipeline = BatchedInferencePipeline(model=whisper)
    audio = pcm.astype(np.float32) / 32768.0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    segments, _ = pipeline.transcribe(audio, language=language, beam_size=1, temperature=0.0, batch_size=8)
    count = sum(1 for _ in segments)
    return {"wall_s": round(time.perf_counter() - wall0, 2), "cpu_s": round(time.process_time() - cpu0, 2),
            "segments": count}


def whisper_run(args: argparse.Namespace, pcm: np.ndarray) -> None:
    options = {"language": args.language, "model": args.model}
    floor = engine_alone("whisper", pcm, **options)
    print("engine alone", floor, flush=True)
    windowed = through_server("whisper", pcm, 3.0, **options)
    print("through the server", windowed, flush=True)
    batched = faster_whisper_batched(pcm, args.model, args.language)
    print("faster-whisper batched", batched, flush=True)
    save("flow_whisper", {
        "audio_minutes": args.minutes, "engine": "whisper", **options,
        "engine_alone": floor, "client_window_3s": windowed, "faster_whisper_batched": batched,
        "ratio_window_over_floor": round(float(windowed["wall_s"]) / max(floor["wall_s"], 1e-4), 2),
        "ratio_window_over_batched": round(float(windowed["wall_s"]) / max(batched["wall_s"], 1e-4), 2),
    })


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--engine", default="pocketsphinx")
    parser.add_argument("--language", default="en", help="with --engine whisper (the sample is English)")
    parser.add_argument("--model", default="base", help="with --engine whisper")
    args = parser.parse_args()
    pcm = long_audio(args.minutes)
    if args.engine == "whisper":
        whisper_run(args, pcm)
        return
    floor = engine_alone(args.engine, pcm)
    windowed = through_server(args.engine, pcm, 3.0)
    unwindowed = through_server(args.engine, pcm, None)
    if "error" in unwindowed:  # the baseline on audio that fits the server's queue: 4 minutes
        short = pcm[: 4 * 60 * 16000]
        unwindowed["on_4_minutes"] = {"engine_alone": engine_alone(args.engine, short),
                                      "client_window_3s": through_server(args.engine, short, 3.0),
                                      "client_no_window": through_server(args.engine, short, None)}
    save("flow", {
        "audio_minutes": args.minutes,
        "engine": args.engine,
        "engine_alone": floor,
        "client_window_3s": windowed,
        "client_no_window": unwindowed,
        "ratio_window_over_floor": round(windowed["wall_s"] / max(floor["wall_s"], 1e-4), 2),
        "ratio_no_window_over_floor": (None if "error" in unwindowed
                                       else round(unwindowed["wall_s"] / max(floor["wall_s"], 1e-4), 2)),
    })


if __name__ == "__main__":
    main()
