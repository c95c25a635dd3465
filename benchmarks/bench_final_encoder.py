"""A final's encoder input: 30 s (Whisper's window) against 20 s and 10 s, one utterance per decode.

    python -m benchmarks.bench_final_encoder [--lengths 3000 2000 1000]

A live final is one utterance decoded alone, as soon as its silence is heard; its latency is mostly
the encoder, whose cost grows with its input (3000 mel frames, 30 s, unless shortened).  This
decodes every labelled utterance the project has, each alone with 0.3 s of silence around it (the
engine's padding), on the shared model's own batched decode (``SharedModel.decode_batch``), at
each encoder length in turn, and reports the wall time and the WER (jiwer, lower case,
punctuation removed) of each length side by side:

- the 30 HTS sentences of ``bench_decoder`` (Festival's natural-sounding voice), ``language="en"``,
  each alone, and in threes 0.3 s apart (10-12 s utterances);
- the suite's espeak English sentences (``tests/fixtures/sentences``), ``language="en"``;
- the suite's Indonesian clips (``tests/fixtures/indonesian``), ``language="id"`` and ``"auto"``
  (detected between Indonesian and English, as the engine's default).

An input shorter than 3000 frames is never shorter than the audio plus a second (``decoder.Window``).
Results go to ``benchmarks/out/final_encoder.json``.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_decoder import SENTENCES
from benchmarks.common import OUT, ROOT, save

FIXTURES = ROOT / "tests" / "fixtures"
HTS = OUT / "hts_sentences"
PAD = 0.3


def hts_clips() -> list[tuple[Path, str]]:
    """Each HTS sentence as its own 16 kHz clip (made once with festival and sox)."""
    HTS.mkdir(parents=True, exist_ok=True)
    clips = []
    for i, sentence in enumerate(SENTENCES):
        clip = HTS / f"{i:02d}.wav"
        if not clip.exists():
            with tempfile.TemporaryDirectory() as tmp:
                text, wav = Path(tmp, "t.txt"), Path(tmp, "t.wav")
                text.write_text(sentence + "\n")
                subprocess.run(["text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", "-o", str(wav), str(text)],
                               check=True, capture_output=True)
                subprocess.run(["sox", str(wav), "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer",
                                str(clip)], check=True, capture_output=True)
        clips.append((clip, sentence))
    return clips


def manifest(folder: Path) -> list[tuple[Path, str]]:
    with open(folder / "manifest.csv", newline="") as f:
        return [(folder / row["file"], row["text"]) for row in csv.DictReader(f)]


def load(path: Path) -> np.ndarray:
    import soundfile

    audio, rate = soundfile.read(path, dtype="float32")
    assert rate == 16000 and audio.ndim == 1, path
    return np.asarray(audio, dtype=np.float32)


def utterances(clips: list[tuple[Path, str]], join: int = 1) -> list[tuple[np.ndarray, str]]:
    """Each clip (or ``join`` consecutive clips, 0.3 s apart: longer utterances) with the engine's padding."""
    pad = np.zeros(int(PAD * 16000), dtype=np.float32)
    out = []
    for i in range(0, len(clips) - join + 1, join):
        group = clips[i:i + join]
        audio = np.concatenate([part for path, _ in group for part in (pad, load(path))][1:])
        out.append((np.concatenate([pad, audio, pad]), " ".join(text for _, text in group)))
    return out


def words(text: str) -> str:
    return " ".join(re.sub(r"[^\w' ]", " ", text.lower().replace("-", " ")).split())


def run(shared: Any, clips: list[tuple[np.ndarray, str]], languages: tuple[str, ...], frames: int) -> dict[str, Any]:
    import jiwer

    from bk_notebook.server.engines.decoder import Priority, Window

    hypotheses, spent = [], 0.0
    for audio, _ in clips:
        window = Window(audio, languages, int(min(400, 24 + 12 * len(audio) / 16000)), Priority.FINAL,
                        encoder_frames=frames)
        began = time.perf_counter()
        decoded = shared.decode_batch([window])[0]
        spent += time.perf_counter() - began
        hypotheses.append(decoded.texts[0])
    references = [words(text) for _, text in clips]
    measured = jiwer.process_words(references, [words(h) for h in hypotheses])
    return {"wall_s": round(spent, 2), "per_utterance_s": round(spent / len(clips), 3),
            "wer": round(measured.wer, 4), "errors": measured.substitutions + measured.deletions + measured.insertions,
            "words": sum(len(r.split()) for r in references),
            "differs": [h for h, (_, ref) in zip(hypotheses, clips, strict=True) if words(h) != words(ref)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[3000, 2000, 1000])
    args = parser.parse_args()
    from bk_notebook.server.engines.decoder import shared_model

    shared = shared_model("base")
    hts, indonesian = hts_clips(), manifest(FIXTURES / "indonesian")
    sets = {"hts_en": (utterances(hts), ("en",)), "hts_en_threes": (utterances(hts, join=3), ("en",)),
            "espeak_en": (utterances(manifest(FIXTURES / "sentences")), ("en",)),
            "indonesian_id": (utterances(indonesian), ("id",)),
            "indonesian_auto": (utterances(indonesian), ("id", "en"))}
    results: dict[str, Any] = {"load_1min": os.getloadavg()[0], "padding_s": PAD}
    for name, (clips, languages) in sets.items():
        results[name] = {str(frames): run(shared, clips, languages, frames) for frames in args.lengths}
    results["load_1min_end"] = os.getloadavg()[0]
    save("final_encoder", results)


if __name__ == "__main__":
    main()
