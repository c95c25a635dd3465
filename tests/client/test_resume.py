"""Reconnect and resume: a connection lost mid-stream is replaced, the transcript has no gap and no repeat."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

import bk_notebook as bk
import bk_notebook.protocol
from bk_notebook.client.resume import ResumeBuffer

from helpers import scripted_server


def stretches(*lengths: float, gap: float = 0.8) -> np.ndarray:
    parts = [np.zeros(int(16000 * gap))]
    for seconds in lengths:
        parts += [0.3 * np.sin(np.arange(int(16000 * seconds)) / 3), np.zeros(int(16000 * gap))]
    return (np.concatenate(parts) * 32767).astype(np.int16)


class CuttingProxy:
    """Forwards to the real server; kills the first ``cuts`` connections after ``after`` audio chunks."""

    def __init__(self, upstream: str, after: int, cuts: int = 1) -> None:
        self.upstream, self.after, self.cuts = upstream, after, cuts
        self.connections = 0

    async def __call__(self, client_ws: Any) -> None:
        from websockets.asyncio.client import connect

        self.connections += 1
        cut_this = self.connections <= self.cuts
        async with connect(self.upstream) as server_ws:
            async def down() -> None:
                async for message in server_ws:
                    await client_ws.send(message)

            downstream = asyncio.create_task(down())
            chunks = 0
            try:
                async for message in client_ws:
                    if '"audioStream"' in message:
                        chunks += 1
                        if cut_this and chunks == self.after:
                            client_ws.transport.abort()  # a reset, as a flaky network does
                            return
                    await server_ws.send(message)
            finally:
                downstream.cancel()


async def run(url: str, audio: np.ndarray, speed: float | None = 5.0, **client_kw: Any) -> bk.Transcript:
    # Paced at 5x so that finals reach the client before the cut, as they would in a live stream.
    client = bk.Client(url, retry_backoff=0.01, **client_kw)
    return await client.transcribe(audio, 16000, speed=speed)


@pytest.mark.parametrize("cut_after", [12, 31, 47])  # in silence, mid-sound, near a final
async def test_resumed_transcript_equals_an_uninterrupted_one(energy_server, cut_after: int) -> None:
    audio = stretches(0.5, 1.2, 0.7, 1.0, 0.4)
    clean = await run(energy_server.url, audio, speed=None)  # the energy engine's finals do not depend on the pace
    proxy = CuttingProxy(energy_server.url, after=cut_after)
    async with scripted_server(proxy) as url:
        resumed = await run(url, audio, reconnect=2)
    key = [(r["text"], r["start"], r["end"]) for r in clean.finals]
    assert [(r["text"], r["start"], r["end"]) for r in resumed.finals] == key  # no gap, no repeat
    assert proxy.connections == 2 and resumed.gaps == []
    # Each record names its own session; a cut before the first final leaves every final to the second.
    assert len({r["session_id"] for r in resumed.finals}) == (1 if cut_after == 12 else 2)
    assert resumed.finals[-1]["session_id"] == resumed.session_id
    assert resumed.duration == clean.duration


async def test_without_reconnect_the_loss_is_raised_with_the_finals(energy_server) -> None:
    audio = stretches(0.5, 1.2, 0.7)
    async with scripted_server(CuttingProxy(energy_server.url, after=31)) as url:
        with pytest.raises(bk.ConnectionLost) as info:
            await run(url, audio)
    assert info.value.transcript.text == "sound 0.50 s"


async def test_reconnects_are_bounded(energy_server) -> None:
    audio = stretches(0.5, 1.2, 0.7)
    proxy = CuttingProxy(energy_server.url, after=10, cuts=10)
    async with scripted_server(proxy) as url:
        with pytest.raises(bk.ConnectionLost):
            await run(url, audio, reconnect=2)
    assert proxy.connections == 3


async def test_audio_beyond_the_resume_buffer_is_reported_as_a_gap(energy_server) -> None:
    audio = stretches(0.5, 3.0, 0.4)  # the cut falls 2 s into the 3 s sound; only 1 s is kept
    async with scripted_server(CuttingProxy(energy_server.url, after=36)) as url:
        t = await run(url, audio, reconnect=1, resume_buffer_seconds=1.0)
    [(start, end)] = t.gaps
    assert start == pytest.approx(1.3) and end == pytest.approx(2.6)
    assert not t.complete and "1.3 s of audio could not be transcribed" in t.incomplete_reason
    assert t.finals[0]["text"] == "sound 0.50 s" and t.finals[-1]["text"] == "sound 0.40 s"


@pytest.mark.pure
def test_resume_buffer_bookkeeping() -> None:
    buf = ResumeBuffer(limit=10)
    buf.sent(b"abcdef")
    buf.final_ended_at(4)
    assert buf.resume() == (4, b"ef", None)
    buf.sent(b"ghijklmnop")  # 12 bytes after the final: 2 fall out of the buffer
    start, data, gap = buf.resume()
    assert (start, data, gap) == (6, b"ghijklmnop", (4, 6))
    buf.final_ended_at(3)  # an older end changes nothing
    assert buf.resume()[0] == 6


@pytest.mark.pure
def test_resume_buffer_overflow_before_any_final_is_a_gap_from_the_start() -> None:
    buf = ResumeBuffer(limit=9)
    buf.sent(b"0123456789")  # one byte over: the oldest byte goes
    assert buf.resume() == (1, b"123456789", (0, 1))
    buf.final_ended_at(5)  # an odd position is rounded down to a whole sample
    assert buf.resume() == (4, b"456789", None)
    buf.final_ended_at(2)  # behind what was kept: nothing to cut
    assert buf.resume() == (4, b"456789", None)


@pytest.mark.pure
def test_resume_buffer_cuts_by_timeline_position_after_an_overflow() -> None:
    buf = ResumeBuffer(limit=4)
    buf.sent(b"abcdef")  # kept from position 2
    buf.final_ended_at(4)  # cut the 2 bytes before position 4
    assert buf.resume() == (4, b"ef", None)
    buf = ResumeBuffer(limit=9)
    buf.sent(b"0123456789")  # kept from position 1
    buf.final_ended_at(2)  # a cut of one byte
    assert buf.resume() == (2, b"23456789", None)


@pytest.mark.pure
def test_reconnect_setting_is_checked() -> None:
    with pytest.raises(bk.UsageError, match="reconnect"):
        bk.Client("ws://127.0.0.1:9/x", reconnect=-1)
    assert json.dumps(bk.Client("ws://127.0.0.1:9/x").reconnect) == "0"


async def test_events_iterate_across_a_resumption(energy_server) -> None:
    audio = stretches(0.5, 1.2, 0.7)
    seen: list[str] = []

    async def collect(stream: Any) -> None:
        async for event in stream.events():
            if isinstance(event, bk.protocol.Final):
                seen.append(event.text)

    async with scripted_server(CuttingProxy(energy_server.url, after=31)) as url:
        async with bk.Client(url, retry_backoff=0.01, reconnect=1).stream(speed=5.0) as s:
            collector = asyncio.create_task(collect(s))
            await s.send(audio)
            t = await s.stop()
        await asyncio.wait_for(collector, 5)  # ends when the stream ends, not at the lost connection
    assert seen == [r["text"] for r in t.finals] == ["sound 0.50 s", "sound 1.20 s", "sound 0.70 s"]
