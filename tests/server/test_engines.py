"""Engines never break on a stop: the stop-point sweep, every leftover, forced endpoints, quiet logs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from bk_notebook.protocol import Final, Partial
from bk_notebook.server.engines import EnergyEngine, engine_factory

from helpers import FIXTURES, ROOT, require

RECORDINGS = [*sorted(FIXTURES.glob("*.wav")), ROOT / "bk_notebook" / "data" / "sample.wav"]


def pcm_of(path: Path) -> bytes:
    data, sr = sf.read(path, dtype="int16")
    assert sr == 16000 and data.ndim == 1
    return data.tobytes()


def make(kind: str) -> Any:
    if kind == "pocketsphinx":
        require("pocketsphinx", "the default engine")
    return engine_factory(kind)()


def check_stop(events: list[Any], reference: list[Final], what: str) -> None:
    """After a stop: every final well-formed; finals of utterances ended before match the full run;
    words shown as a partial since the last final are in a final."""
    finals = [e for e in events if isinstance(e, Final)]
    assert all(f.end > f.start for f in finals), (what, finals)
    shown = None  # the words on screen that no final has replaced yet
    for e in events:
        if isinstance(e, Partial):
            shown = e.text
        elif isinstance(e, Final):
            shown = None
    assert shown is None, (what, f"{shown!r} was shown as a partial and then lost")
    early = finals[:-1]  # the last may be an utterance cut by the stop; those before must be as in the full run
    assert [(f.text, f.start, f.end) for f in early] == [(f.text, f.start, f.end) for f in reference[:len(early)]]


def check_covers_the_stop(engine: Any, at_stop: list[Any], stop_time: float, reference: list[Final]) -> None:
    """PocketSphinx decodes the audio up to the stop: a final the stop produced ends at the stop, or
    where its utterance ended in the full run if that came first (within 0.15 s): none of the
    endpointer's buffered last 0.3 s is dropped."""
    if isinstance(engine, EnergyEngine):
        return  # its finals end at the last loud frame, by design
    for f in at_stop:
        if isinstance(f, Final):
            full_end = next((r.end for r in reference if abs(r.start - f.start) < 1e-6), stop_time)
            assert f.end >= min(stop_time, full_end) - 0.15, (f, stop_time, full_end)


def sweep(engine: Any, pcm: bytes, name: str) -> int:
    chunks = [pcm[i:i + 3200] for i in range(0, len(pcm), 3200)]
    reference: list[Any] = []
    for c in chunks:
        reference += engine.feed(c)
    reference += engine.flush()
    full = [e for e in reference if isinstance(e, Final)]
    assert full, name
    for n in range(len(chunks) + 1):  # stop after chunk n (n = 0: audioStop with no audio)
        events: list[Any] = []
        for c in chunks[:n]:
            events += engine.feed(c)
        at_stop = engine.flush()  # flush() ends the session: the engine is ready for the next run
        check_stop(events + at_stop, full, f"{name} stopped after chunk {n}")
        check_covers_the_stop(engine, at_stop, len(b"".join(chunks[:n])) / 32000, full)
    return len(chunks) + 1


def test_energy_engine_stop_point_sweep() -> None:
    engine = make("energy")
    points = sum(sweep(engine, pcm_of(path), path.name) for path in RECORDINGS)
    assert points > 250


@pytest.mark.slow
def test_pocketsphinx_stop_point_sweep() -> None:
    engine = make("pocketsphinx")  # one decoder, reused as the server reuses it
    points = sum(sweep(engine, pcm_of(path), path.name) for path in RECORDINGS)
    assert points > 250


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["energy", "pocketsphinx"])
def test_any_leftover_length_at_the_stop(kind: str) -> None:
    """The last chunk may be any even length: 0..3198 bytes left over, mid-speech and in silence."""
    engine = make(kind)
    pcm = pcm_of(FIXTURES / "tomorrow.wav")
    full = [e for e in engine.feed(pcm) + engine.flush() if isinstance(e, Final)]
    lengths = sorted({0, 2, 318, 320, 322, 638, 640, 642, 958, 960, 962, 1918, 1920, 1922, 2878, 2880, 3198,
                      *range(98, 3200, 196)})
    for stop in (1.6, 3.3):  # in the middle of the sentence; in the trailing silence
        head = int(stop * 10) * 3200
        prefix = [pcm[i:i + 3200] for i in range(0, head, 3200)]
        for extra in lengths:
            events: list[Any] = []
            for c in [*prefix, pcm[head:head + extra]]:
                events += engine.feed(c)
            at_stop = engine.flush()
            events += at_stop
            check_stop(events, [], f"{kind} stop at {stop} s + {extra} bytes")
            check_covers_the_stop(engine, at_stop, (head + extra) / 32000, full)
            finals = [e for e in events if isinstance(e, Final)]
            assert finals, f"speech was under way at {stop} s + {extra} bytes: its final is missing"


@pytest.mark.parametrize("kind", ["energy", "pocketsphinx"])
def test_a_stop_with_no_audio_at_all_returns_nothing(kind: str) -> None:
    engine = make(kind)
    assert engine.flush() == [] and engine.flush() == []
    assert engine.feed(b"") == [] and engine.flush() == []


def test_energy_engine_cuts_continuous_sound_at_max_utterance_seconds() -> None:
    engine = EnergyEngine(max_utterance_seconds=1.5)
    tone = (0.3 * np.sin(np.arange(16000 * 4) * 2 * np.pi * 300 / 16000) * 32767).astype("<i2").tobytes()
    events = engine.feed(tone) + engine.flush()
    assert [(f.start, f.end) for f in events if isinstance(f, Final)] == [(0.0, 1.5), (1.5, 3.0), (3.0, 4.0)]


@pytest.mark.slow
def test_pocketsphinx_cuts_noise_into_bounded_utterances_quietly(capfd) -> None:
    """Unpaced random noise: forced endpoints every max_utterance_seconds; stderr stays quiet."""
    engine = make("pocketsphinx")
    noise = np.random.default_rng(7).integers(-32768, 32767, 16000 * 65, dtype=np.int16).tobytes()
    events: list[Any] = []
    for i in range(0, len(noise), 3200):
        events += engine.feed(noise[i:i + 3200])
    events += engine.flush()
    finals = [e for e in events if isinstance(e, Final)]
    assert all(0 < f.end - f.start <= 20.0 + 0.03 for f in finals), finals  # the cut falls on a 30 ms frame
    cuts = [f.end for f in finals]
    assert any(abs(c - 20) < 0.1 for c in cuts) and any(abs(c - 40) < 0.1 for c in cuts), cuts
    err = capfd.readouterr().err
    assert len(err) < 4096, err[:500]  # unbounded: one warning per frame, ~5 MB per minute of noise


def test_the_slow_test_engine_loads_from_the_repository_root_in_a_subprocess(tmp_path) -> None:
    """``--engine tests.server.slow_engine:SlowEngine`` works with the repository root off sys.path."""
    (tmp_path / "bk_notebook").symlink_to(ROOT / "bk_notebook")
    code = ("import sys, time; sys.path[:] = [p for p in sys.path if p not in ('', '.', sys.argv[1])]; "
            "from bk_notebook.server.engines import engine_factory; "
            "e = engine_factory('tests.server.slow_engine:SlowEngine', inner='energy', speed=2.0)(); "
            "t = time.perf_counter(); e.feed(bytes(16000)); print(round(time.perf_counter() - t, 1))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) >= 0.2  # 0.5 s of audio at twice real time: ~0.25 s


def test_one_table_names_the_engines_and_a_new_row_is_all_an_engine_needs(monkeypatch: pytest.MonkeyPatch,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``ENGINES`` is read by the factory, the server's option checks and the CLI; old import paths still work."""
    import dataclasses

    from bk_notebook import Client
    from bk_notebook.cli import main
    from bk_notebook.server import engines, local_server
    from bk_notebook.server.engines import ENGINES, EngineSpec

    assert list(ENGINES) == ["whisper", "pocketsphinx", "energy"]
    assert ENGINES["whisper"].options == ("language", "model", "partials", "speculate", "word_timestamps", "prompt",
                                          "hotwords", "task")
    assert [n for n, s in ENGINES.items() if s.processes] == ["pocketsphinx"]
    # A new engine: one module (here the energy one under another name) and one row.
    row = EngineSpec("quiet", "energy", cuts_utterances=False)
    monkeypatch.setitem(ENGINES, "quiet", row)
    # The server's limit (3 s) goes only to an engine that cuts utterances: 5 s of sound is then cut in two.
    sound = (0.3 * np.sin(np.arange(16000 * 5) * 2 * np.pi * 300 / 16000) * 32767).astype("<i2")
    for cuts, lengths in ((False, [5.0]), (True, [3.0, 2.0])):
        monkeypatch.setitem(ENGINES, "quiet", dataclasses.replace(row, cuts_utterances=cuts))
        with local_server(engine="quiet", max_utterance_seconds=3.0, workers=1) as server:
            t = asyncio.run(Client(server.url).transcribe(sound, 16000, speed=None))
        assert [r["end"] - r["start"] for r in t.finals] == pytest.approx(lengths, abs=0.05), t.finals
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "whisper, pocketsphinx, energy, quiet or module:Class" in " ".join(capsys.readouterr().out.split())
    # The old layout's import paths: bk_notebook.server.whisper and .models.
    from bk_notebook.server import models, whisper

    assert whisper.WhisperEngine.__module__ == "bk_notebook.server.engines.whisper"
    assert models.model_folder is engines.weights.model_folder
