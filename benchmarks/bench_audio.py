"""Audio conversion speed and memory, and streaming memory for long files.

    python -m benchmarks.bench_audio [--minutes 60] [--curve 10 30 60 120]

Part 1: one hour of 44.1 kHz stereo float32 converted to 16 kHz int16 by bk.to_pcm16 (in memory),
by librosa.load(path, sr=16000) (from a WAV file) and by scipy.signal.resample_poly, each in a
fresh subprocess: wall time and peak memory above the process's own baseline (tracemalloc peak of
numpy's allocations, and ru_maxrss).
Part 2: transcribing a file of N minutes (16-bit stereo 44.1 kHz WAV) through bk's client to a
null server, unpaced: peak RSS of the process for each N. Blocks are decoded and resampled as they
are streamed, so the curve should be flat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, null_server, save

CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
method, path, minutes = sys.argv[1], sys.argv[2], float(sys.argv[3])
sr = 44100
if method != "librosa_load":
    import soundfile as sf
    x = sf.read(path, dtype="float32")[0].T if method != "bk_to_pcm16_from_file" else None
import librosa, scipy.signal, soxr, bk_notebook as bk
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
t = time.perf_counter()
if method == "bk_to_pcm16":
    y = bk.to_pcm16(x, sr)
elif method == "librosa_load":
    y, _ = librosa.load(path, sr=16000)
elif method == "scipy_resample_poly":
    y = scipy.signal.resample_poly(x.mean(axis=0), 160, 441)
elif method == "bk_open_audio_stream":
    y = sum(len(block) for block in bk.open_audio(path))
wall = time.perf_counter() - t
_, peak = tracemalloc.get_traced_memory()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"method": method, "wall_s": round(wall, 2), "peak_alloc_mb": round(peak / 2**20, 1),
                  "rss_growth_mb": round((rss - base) / 1024, 1)}))
"""

TRANSCRIBE = r"""
import asyncio, json, resource, sys, time
import bk_notebook as bk
path, url = sys.argv[1], sys.argv[2]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
tr = asyncio.run(bk.Client(url).transcribe(path, speed=None))
print(json.dumps({"audio_minutes": round(tr.duration / 60, 1), "wall_s": round(time.perf_counter() - t, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "rss_after_imports_mb": round(base / 1024, 1)}))
"""


def write_wav(path: Path, minutes: float, subtype: str) -> None:
    import numpy as np
    import soundfile as sf

    sr, block = 44100, 44100 * 60
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=sr, channels=2, subtype=subtype) as f:
        for _ in range(int(minutes)):
            t = np.arange(block) / sr
            tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(block)
            f.write(np.stack([tone, tone * 0.5], axis=1).astype(np.float32))


def child(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--curve", type=float, nargs="+", default=[10, 30, 60, 120])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hour = Path(tmp) / "hour.wav"
        write_wav(hour, args.minutes, "FLOAT")
        conversion = [child(CHILD, m, str(hour), str(args.minutes)) for m in
                      ("bk_to_pcm16", "librosa_load", "scipy_resample_poly", "bk_open_audio_stream")]
        for row in conversion:
            print(row, flush=True)
        hour.unlink()
        curve = []
        with null_server() as url:
            for minutes in args.curve:
                path = Path(tmp) / f"{minutes:g}min.wav"
                write_wav(path, minutes, "PCM_16")
                curve.append(child(TRANSCRIBE, str(path), url))
                path.unlink()
                print(curve[-1], flush=True)
    save("audio", {"conversion_minutes": args.minutes, "conversion": conversion, "streaming_curve": curve})


if __name__ == "__main__":
    main()
