"""Make the bundled English sample, ``bk_notebook/data/sample.wav``, with a natural voice.

Usage (from the repository root; needs Debian's ``festival``, ``festvox-us-slt-hts`` and ``sox``)::

    python -m tools.make_sample             # writes bk_notebook/data/sample.wav and sample.webm
    python -m tools.make_sample --out DIR   # somewhere else, to compare

The voice is Festival's HTS voice ``cmu_us_slt_arctic_hts`` (Debian ``festvox-us-slt-hts``). Its
licence (``/usr/share/doc/festvox-us-slt-hts/copyright``) is CMU's EST-2003 for the voice data,
EST-2000 for its Scheme files and BSD-3-clause for the HTS parts: use, copying, modification and
redistribution are permitted, keeping the copyright notices; none of them restricts the audio the
voice speaks. The output is committed, so neither users nor CI need Festival.

The shape is the earlier espeak-ng sample's, which the tests and the docs' timings rely on: two
sentences (two finals for an end-pointing engine) with a long pause between them, 16 kHz mono int16,
8.4 s, and a faint noise floor instead of exact digital silence (exact zeros upset PocketSphinx's
end-pointer). ``sample.webm`` is the same speech as a browser would record it (Opus in WebM, 48 kHz).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from bk_notebook import sample_text

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bk_notebook" / "data"
VOICE = "(voice_cmu_us_slt_arctic_hts)"
SENTENCES = tuple(s.strip() for s in re.findall(r"[^.]+\.", sample_text()))  # one utterance each
RATE = 16000
STARTS = (0.35, 4.80)  # where each sentence starts, seconds: the earlier sample's
LENGTH = 8.40          # seconds
NOISE_RMS = 19.0       # int16 units, the earlier sample's floor (about -65 dBFS)
SPEECH_LEVEL = 0.45    # peak, as a fraction of full scale
SEED = 20261207        # the noise is the same on every run


def speak(text: str, folder: Path) -> np.ndarray:
    """``text`` spoken by the HTS voice, resampled by sox (no dither: the same bytes every run), trimmed."""
    raw, wav = folder / "voice.wav", folder / "voice16k.wav"
    subprocess.run(["text2wave", "-eval", VOICE, "-o", str(raw)], input=text.encode(), check=True)
    subprocess.run(["sox", "-D", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(wav)],
                   check=True)
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == RATE, rate
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[max(loud[0] - 800, 0): loud[-1] + 800]  # 50 ms kept around the speech


def compose(utterances: list[np.ndarray]) -> np.ndarray:
    """The utterances placed at ``STARTS`` over a faint noise floor, as int16."""
    out = np.zeros(int(LENGTH * RATE), dtype=np.float32)
    peak = max(float(np.abs(u).max()) for u in utterances)
    for start, utterance in zip(STARTS, utterances, strict=True):
        at = int(start * RATE)
        if at + len(utterance) > len(out):
            raise SystemExit(f"a sentence of {len(utterance) / RATE:.2f} s does not fit at {start} s")
        out[at: at + len(utterance)] += utterance * (SPEECH_LEVEL / peak)
    noise = np.random.default_rng(SEED).normal(0.0, NOISE_RMS / 32768, len(out)).astype(np.float32)
    return np.clip(np.round((out + noise) * 32767), -32768, 32767).astype(np.int16)


def make(folder: Path) -> tuple[Path, Path]:
    """Write ``sample.wav`` and ``sample.webm`` into ``folder``."""
    with tempfile.TemporaryDirectory() as scratch:
        pcm = compose([speak(text, Path(scratch)) for text in SENTENCES])
    wav, webm = folder / "sample.wav", folder / "sample.webm"
    sf.write(wav, pcm, RATE, subtype="PCM_16")
    # What a browser's MediaRecorder makes: Opus at 48 kHz in WebM, from the first sentence only
    # (the webm sample stands for a short recording; keep it small).
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-t", "4.5", "-ar", "48000",
                    "-c:a", "libopus", "-b:a", "24k", "-map_metadata", "-1", "-fflags", "+bitexact",
                    str(webm)], check=True)
    return wav, webm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA, help="folder to write into (default: the package's data)")
    args = parser.parse_args(argv)
    wav, webm = make(args.out)
    print(f"wrote {wav} ({sf.info(wav).duration:.2f} s) and {webm}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
