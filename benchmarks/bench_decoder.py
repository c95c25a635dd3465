"""Whisper through the local server, before and after a change, in one run: files, live latency, admission.

    python -m benchmarks.bench_decoder [--before PATH] [--live-seconds 30] [--skip-admission]

``--before`` is a checkout of the code to compare with (``git worktree add /tmp/decoder-before main``);
without it only this checkout runs.  Each checkout runs in a subprocess of its own (``PYTHONPATH`` set
to it), one after the other, with the same audio and the same model files:

- the audio: 30 English sentences spoken by Festival's HTS voice (``text2wave -eval
  "(voice_cmu_us_slt_arctic_hts)"``, natural-sounding synthetic speech), 1 s of silence after each,
  about 2 minutes; made once into ``benchmarks/out/hts_30.wav`` (needs festival and
  festvox-us-slt-hts, and sox);
- the file at ``speed=None`` through ``bk.local_server(engine="whisper", language="en")``: wall time
  and WER (jiwer, lower case, punctuation removed), against faster-whisper's
  ``BatchedInferencePipeline`` on the same audio (same model files, int8, same threads, batch 8,
  beam 1, ``language="en"``);
- live: 1, 3 and 6 sessions at real time with partials (admission off: all N run), each
  streaming the first ``--live-seconds`` of the file (starts staggered by 0.3 s): final latency
  after the end of speech (the final's arrival
  minus the moment its ``end`` was sent) p50/p95, and the first partial of each utterance after its
  start;
- admission: 8 live sessions offered at once (0.3 s apart) to ``local_server(workers=8)`` with no
  client retries: how many ran, their final latency p95.

Client and server share the subprocess (the server in its thread, as ``local_server`` runs in a
notebook).  Results go to ``benchmarks/out/decoder.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import OUT, ROOT, save

AUDIO = OUT / "hts_30.wav"
SENTENCES = [
    "The train to the city leaves at half past seven every morning.",
    "Please remember to bring your umbrella because it may rain later.",
    "My sister planted tomatoes and beans in the garden last spring.",
    "The library will be closed on Monday for the public holiday.",
    "He walked slowly along the river and watched the boats go by.",
    "We need two more chairs for the meeting this afternoon.",
    "The children laughed when the little dog chased its own tail.",
    "Could you tell me where the nearest post office is?",
    "The soup was too hot, so she waited a few minutes before eating.",
    "Our teacher asked us to read the first three chapters by Friday.",
    "A strong wind blew the leaves across the empty playground.",
    "The doctor said that I should drink more water every day.",
    "They painted the kitchen a bright shade of yellow.",
    "The market sells fresh fish, rice and vegetables every weekend.",
    "I forgot my password again and had to reset it.",
    "The population of the town doubled in the last twenty years.",
    "She plays the piano beautifully and practices every evening.",
    "The bus was late because of heavy traffic on the bridge.",
    "Turn left at the second traffic light and park near the bank.",
    "My grandfather tells wonderful stories about his childhood.",
    "The museum has a new exhibition about ancient ships.",
    "Please send me the report before the end of the week.",
    "The coffee machine on the third floor is broken again.",
    "We watched the sunset from the top of the hill.",
    "The students built a small robot for the science fair.",
    "It is important to wash your hands before cooking.",
    "The farmer sold his apples at a good price this year.",
    "Our flight was delayed for two hours because of the storm.",
    "He found an old photograph hidden inside the book.",
    "The concert starts at eight, so we should leave soon.",
]

WORKER = r"""
import asyncio, json, re, sys, time
import numpy as np
import bk_notebook as bk

options = json.loads(sys.argv[1])
pcm = bk.to_pcm16(options["audio"])
reference = options["reference"]
out = {}

def words(text):
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()

def wer(hypothesis):
    import jiwer
    return jiwer.wer(" ".join(words(reference)), " ".join(words(hypothesis)))

def pct(values, q):
    return round(float(np.percentile(values, q)), 3) if values else None

async def live(url, offset, results, retries):
    client = bk.Client(url, connect_retries=retries, retry_backoff=0.05)
    audio = pcm[: int(options["live_seconds"] * 16000)]
    t0 = []
    finals, partials = [], []  # (arrival, record)
    def on_final(record):
        finals.append((time.monotonic(), record))
    def on_partial(text):
        partials.append(time.monotonic())
    await asyncio.sleep(offset)
    try:
        stream = client.stream(speed=1.0, on_final=on_final, on_partial=on_partial)
        async with stream:
            t0.append(time.monotonic())
            await stream.send(audio)
    except bk.WorkerUnavailable:
        results.append(None)
        return
    start = t0[0]
    latency = [arrival - (start + record["end"]) for arrival, record in finals]
    first_partials, previous = [], start
    for arrival, record in finals:  # the first partial of each utterance, after the utterance began
        seen = [p for p in partials if previous < p <= arrival and p >= start + record["start"]]
        if seen:
            first_partials.append(seen[0] - (start + record["start"]))
        previous = arrival
    results.append({"latency": latency, "first_partial": first_partials, "finals": len(finals)})

async def sessions(url, n, retries=5):
    results = []
    await asyncio.gather(*(live(url, 0.3 * i, results, retries) for i in range(n)))
    ran = [r for r in results if r is not None]
    latency = [x for r in ran for x in r["latency"]]
    first = [x for r in ran for x in r["first_partial"]]
    return {"offered": n, "ran": len(ran), "finals": sum(r["finals"] for r in ran),
            "final_latency_p50_s": pct(latency, 50), "final_latency_p95_s": pct(latency, 95),
            "final_latency_max_s": round(max(latency), 3) if latency else None,
            "first_partial_p50_s": pct(first, 50), "first_partial_p95_s": pct(first, 95)}

async def main():
    # admission off here: the live runs measure N sessions that all run (the admission run is below)
    with bk.local_server(engine="whisper", language="en", workers=8, admission=False) as server:
        began = time.perf_counter()
        t = await bk.Client(server.url).transcribe(pcm, 16000, speed=None)
        out["file"] = {"wall_s": round(time.perf_counter() - began, 2), "wer": round(wer(t.text), 4),
                       "finals": len(t.finals), "complete": t.complete,
                       "in_order": all(a["end"] <= b["start"] for a, b in zip(t.finals, t.finals[1:]))}
        for n in options["live"]:
            out[f"live_{n}"] = await sessions(server.url, n)
    if options["admission"]:
        with bk.local_server(engine="whisper", language="en", workers=8, idle_timeout=61.0) as server:
            await bk.Client(server.url).transcribe(pcm[: 20 * 16000], 16000, speed=1.0)  # the decoder measures itself
            out["admission_8"] = await sessions(server.url, 8, retries=1)

asyncio.run(main())

# faster-whisper's batched pipeline on the same audio and model files
from faster_whisper import BatchedInferencePipeline, WhisperModel
try:
    from bk_notebook.server.engines.weights import model_folder
except ImportError:
    from bk_notebook.server.models import model_folder
model = WhisperModel(str(model_folder("base")), device="cpu", compute_type="int8", cpu_threads=options["threads"],
                     local_files_only=True)
pipeline = BatchedInferencePipeline(model)
audio = pcm.astype(np.float32) / 32768
list(pipeline.transcribe(audio[:16000 * 5], batch_size=8, beam_size=1, language="en")[0])  # warm-up
began = time.perf_counter()
segments, _ = pipeline.transcribe(audio, batch_size=8, beam_size=1, language="en")
text = " ".join(s.text for s in segments)
out["batched_pipeline"] = {"wall_s": round(time.perf_counter() - began, 2), "wer": round(wer(text), 4)}
print(json.dumps(out), flush=True)
"""


def make_audio() -> Path:
    """The 30 sentences in Festival's HTS voice, 1 s of silence after each, 16 kHz mono (made once)."""
    if AUDIO.exists():
        return AUDIO
    AUDIO.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for i, sentence in enumerate(SENTENCES):
            text, wav, fixed = Path(tmp, f"{i}.txt"), Path(tmp, f"{i}.wav"), Path(tmp, f"{i}-16k.wav")
            text.write_text(sentence + "\n")
            subprocess.run(["text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", "-o", str(wav), str(text)],
                           check=True, capture_output=True)
            subprocess.run(["sox", str(wav), "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", str(fixed),
                            "pad", "0", "1"], check=True, capture_output=True)
            parts.append(str(fixed))
        subprocess.run(["sox", *parts, str(AUDIO)], check=True, capture_output=True)
    return AUDIO


def run_checkout(path: Path, options: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    proc = subprocess.run([sys.executable, "-c", WORKER, json.dumps(options)], cwd=path, env=env,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{path}: {proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--live-seconds", type=float, default=30.0)
    parser.add_argument("--live", type=int, nargs="*", default=[1, 3, 6])
    parser.add_argument("--skip-admission", action="store_true")
    args = parser.parse_args()
    audio = make_audio()
    options = {"audio": str(audio), "reference": " ".join(SENTENCES), "live_seconds": args.live_seconds,
               "live": args.live, "admission": not args.skip_admission, "threads": min(4, os.cpu_count() or 1)}
    results: dict[str, Any] = {"audio_s": round(audio.stat().st_size / 32000, 1), "load_1min": os.getloadavg()[0]}
    checkouts = ([("before", args.before)] if args.before else []) + [("after", ROOT)]
    for name, path in checkouts:
        print(f"running {name} ({path}) ...", file=sys.stderr, flush=True)
        results[name] = run_checkout(path, options)
        print(json.dumps(results[name], indent=1), file=sys.stderr, flush=True)
    results["load_1min_end"] = os.getloadavg()[0]
    save("decoder", results)


if __name__ == "__main__":
    main()
