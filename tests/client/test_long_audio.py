"""Minutes-long audio end to end: the client, the real local server and PocketSphinx, at every pace.

The bundled sample tiled 15 times is 126 s with 30 utterances.  Unpaced and at the 10x default, the
result is the same 30 finals, complete.  At real time the test plays 3 tiles (25 s, the same 6
utterances unpaced and paced): real time costs its length in wall time, and the pace's effect on the
finals does not grow with it.  Then an engine that decodes slower than real time
(``tests/server/slow_engine.py``, started through the CLI's ``--engine module:Class`` as a user would)
exercises the backlog on purpose: 4 tiles (34 s) at 0.8x real time, unpaced and at 10x, both held back
by the send window for the whole 42 s of decoding.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import bk_notebook as bk

from helpers import ROOT, require

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # minutes of audio, some of it at real time
TILES = 15
REAL_TIME_TILES = 3  # 25 s at real time
SLOW_TILES = 4  # 34 s of audio, 42 s of decoding at 0.8x


@pytest.fixture(scope="module")
def long_pcm() -> np.ndarray:
    return np.tile(bk.to_pcm16(bk.sample_path()), TILES)


def texts(t: bk.Transcript) -> list[str]:
    return [r["text"] for r in t.finals]


async def test_the_same_complete_finals_unpaced_at_10x_and_at_real_time(long_pcm: np.ndarray) -> None:
    require("pocketsphinx", "the default engine")
    with bk.local_server(engine="pocketsphinx", workers=4) as server:
        client = bk.Client(server.url)
        short_pcm = long_pcm[:len(long_pcm) * REAL_TIME_TILES // TILES]
        unpaced, default, short_unpaced, real_time = await asyncio.gather(
            client.transcribe(long_pcm, 16000, speed=None),
            client.transcribe(long_pcm, 16000),
            client.transcribe(short_pcm, 16000, speed=None),
            client.transcribe(short_pcm, 16000, speed=1.0),
        )
    assert len(long_pcm) / 16000 > 120
    for t, tiles in ((unpaced, TILES), (default, TILES), (short_unpaced, REAL_TIME_TILES),
                     (real_time, REAL_TIME_TILES)):
        assert t.complete and not t.gaps
        assert len(t) == 2 * tiles
        assert all(r["end"] > r["start"] for r in t.finals)
    assert texts(unpaced) == texts(default)
    assert texts(short_unpaced) == texts(real_time)
    assert [r["start"] for r in unpaced.finals] == [r["start"] for r in default.finals]
    assert [r["start"] for r in short_unpaced.finals] == [r["start"] for r in real_time.finals]


def serve(engine: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    exe = [sys.executable, "-m", "bk_notebook.cli"]
    proc = subprocess.Popen([*exe, "serve", "--port", "0", "--engine", engine, "--workers", "2"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on" in line:
            return proc, line.split("listening on ")[1].split()[0]
    raise AssertionError(f"the server exited before listening (code {proc.wait()})")


async def test_an_engine_slower_than_real_time_still_gives_every_final(long_pcm: np.ndarray) -> None:
    require("pocketsphinx", "the default engine")
    pcm = long_pcm[:len(long_pcm) * SLOW_TILES // TILES]
    proc, url = serve("tests.server.slow_engine:SlowEngine", BK_SLOW_ENGINE_SPEED="0.8")
    try:
        client = bk.Client(url)
        events: list[Any] = []
        unpaced, default = await asyncio.gather(
            client.transcribe(pcm, 16000, speed=None, on_progress=events.append),
            client.transcribe(pcm, 16000),
        )
    finally:
        proc.terminate()
        proc.wait(30)
    for t in (unpaced, default):
        assert t.complete and len(t) == 2 * SLOW_TILES
    assert texts(unpaced) == texts(default)
    assert events[-1] == pytest.approx(len(pcm) / 16000, abs=1.0)


async def test_whisper_gives_the_same_complete_finals_unpaced_and_at_10x(long_pcm: np.ndarray) -> None:
    require("faster_whisper", "the whisper engine (pip install -e '.[whisper]')")
    # tiny.en, finals only: the whole file twice at once stays within a few minutes on 2 cores.
    with bk.local_server(engine="whisper", model="tiny.en", language="en", partials=False, workers=2) as server:
        client = bk.Client(server.url)
        unpaced, default = await asyncio.gather(client.transcribe(long_pcm, 16000, speed=None),
                                                client.transcribe(long_pcm, 16000))
    for t in (unpaced, default):
        assert t.complete and not t.gaps
        assert 2 * TILES - 5 <= len(t) <= 2 * TILES + 5  # utterances cut by the VAD, about two per tile
        assert all(r["end"] > r["start"] for r in t.finals)
        assert sum("recognition" in text.lower() for text in texts(t)) >= TILES - 2  # the words, tile after tile
    assert texts(unpaced) == texts(default)  # the pace changes nothing the engine hears
