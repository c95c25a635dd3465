"""The client's fault matrix: each fault gives the documented error or result, in time, keeping every final.

The same matrix is a table in the README ("Faults and what you get").
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

import bk_notebook as bk

from client.test_client import SID, Recorder, speech
from helpers import reply, scripted_server


def fast(url: str, **kw: Any) -> bk.Client:
    settings = {"retry_backoff": 0.01, "connect_timeout": 2.0, "reply_timeout": 2.0, "drain_timeout": 2.0, **kw}
    return bk.Client(url, **settings)


def after_chunks(n: int, action: Any) -> Any:
    async def on_chunk(ws: Any, count: int) -> Any:
        if count == 2:
            await ws.send(reply("audioStream", final="early words", start=0.0, end=0.2))
        if count == n:
            return await action(ws)
        return True
    return on_chunk


async def expect(url: str, error: type[BaseException], seconds: float = 5.0, **kw: Any) -> BaseException:
    with pytest.raises(error) as info:
        await asyncio.wait_for(fast(url, **kw).transcribe(speech(seconds), 16000, speed=None), 15)
    return info.value


@pytest.mark.parametrize("code, reason", [(1000, "bye"), (1011, "internal error")])
async def test_close_mid_stream(code: int, reason: str) -> None:
    async def close(ws: Any) -> bool:
        await ws.close(code, reason)
        return False

    # close_timeout: the server stopped reading before the client's close frame came back.
    async with scripted_server(Recorder(on_chunk=after_chunks(5, close)), close_timeout=1) as url:
        err = await expect(url, bk.ConnectionLost)
    assert f"code {code}" in str(err) and reason in str(err) and err.transcript.text == "early words"


async def test_unknown_type_and_reply_without_bk() -> None:
    for bad in (json.dumps({"bk": {"type": "audioNope", "status": 200}}), json.dumps({"data": {"final": "x"}})):
        async def send_bad(ws: Any, bad: str = bad) -> bool:
            await ws.send(bad)
            return True

        async with scripted_server(Recorder(on_chunk=after_chunks(4, send_bad))) as url:
            err = await expect(url, bk.ProtocolError)
        assert err.transcript.text == "early words"


async def test_a_10_mb_reply_is_a_protocol_error() -> None:
    async def huge(ws: Any) -> bool:
        await ws.send(reply("audioStream", partial="x" * (10 * 2**20)))
        return True

    async with scripted_server(Recorder(on_chunk=after_chunks(4, huge)), max_size=None) as url:
        err = await expect(url, bk.ProtocolError)
    assert "larger than" in str(err) and err.transcript.text == "early words"


async def test_status_400_after_audiostop() -> None:
    failed_stop = json.dumps({"bk": {"type": "audioStop", "status": 400, "message": "flush failed"}})
    server = Recorder(stop_replies=(reply("audioStream", final="last"), failed_stop), answer_stop=False)
    async with scripted_server(server) as url:
        err = await expect(url, bk.ServiceError, seconds=1.0)
    assert "flush failed" in str(err) and err.transcript.text == "first last"


@pytest.mark.slow  # 10 minutes of audio through a slow reader
async def test_a_slow_reading_server_makes_the_client_wait_not_queue() -> None:
    """The server reads one chunk per 2 ms; the client may run ahead only by the socket buffers."""
    received = 0
    max_ahead = 0
    sent_now = [0.0]

    async def slow(ws: Any) -> None:
        nonlocal received, max_ahead
        async for raw in ws:
            kind = json.loads(raw)["bk"]["type"]
            if kind == "audioConn":
                await ws.send(reply("audioConn", sess_id=SID))
            elif kind == "audioStream":
                received += 1
                max_ahead = max(max_ahead, sent_now[0] - received * 0.1)
                await asyncio.sleep(0.002)
            elif kind == "audioStop":
                await ws.send(reply("audioStop"))

    audio = speech(600.0)  # 10 minutes: 25 MB of base64, more than any socket buffer
    async with scripted_server(slow) as url:
        async with fast(url, reply_timeout=30.0).stream(on_progress=lambda s: sent_now.__setitem__(0, s)) as s:
            await s.send(audio)
            t = await s.stop()
    assert t.duration == 600.0 and received == 6000
    # In flight is bounded by the kernel's loopback socket buffers (several MB, ~3 minutes of audio
    # as base64 here), not by the file: the client waited instead of queueing ten minutes.
    assert max_ahead < 300.0


async def test_no_reply_to_audiostop_returns_the_finals_after_drain_timeout() -> None:
    async with scripted_server(Recorder(answer_stop=False)) as url:
        client = bk.Client(url, drain_timeout=0.5)
        t = await asyncio.wait_for(client.transcribe(speech(1.5), 16000, speed=None), 10)
    assert t.text == "first"


async def test_refusal_then_success_then_never() -> None:
    async with scripted_server(Recorder(refuse=1)) as url:
        t = await fast(url, connect_retries=2).transcribe(speech(0.5), 16000, speed=None)
        assert t.session_id == SID
    async with scripted_server(Recorder(refuse=10**6)) as url:
        err = await expect(url, bk.WorkerUnavailable, connect_retries=3)
    assert err.transcript is None  # no session had started: nothing to keep


BAD_AUDIO = [
    (np.zeros(0), 16000, "empty"),
    (np.zeros((2, 0)), 16000, "empty"),
    (np.array([0.1, np.nan]), 16000, "nan_to_num"),
    (np.array([0.1, -np.inf]), 16000, "nan_to_num"),
    (np.zeros((2, 2, 10)), 16000, "pass 1-D mono"),
    (np.zeros(100), None, "pass sr="),
    (np.zeros(100), 0, "positive number"),
    (np.zeros(100), -1, "positive number"),
    (np.zeros(100), float("inf"), "positive number"),
    (np.zeros(100), "44.1k", "positive number"),
    (np.zeros(100), True, "positive number"),
    (np.zeros(100, dtype=np.complex64), 16000, "np.real"),
    (np.array(["a"]), 16000, "pass floats"),
    (np.array([None, None]), 16000, "pass floats"),
    (np.zeros(10, dtype=bool), 16000, "pass samples as floats"),
    (np.float64(0.3), 16000, "pass a 1-D array"),
    (np.zeros((64, 64)), 16000, "pass 1-D mono"),
    ("/definitely/not/here.wav", None, "check the path"),
    (b"", None, "encoded file"),
    (b"RIFF\x00\x00\x00\x00WAVEjunk" * 10, None, "convert it first"),
    ("FOLDER", None, "pass an audio file"),
    ("EMPTYFILE", None, "is empty"),
    ("TEXTFILE", None, "convert it first"),
]


@pytest.mark.parametrize("audio, sr, fix", BAD_AUDIO, ids=[f"bad{i}" for i in range(len(BAD_AUDIO))])
async def test_bad_audio_names_the_fix_and_opens_no_connection(audio: Any, sr: Any, fix: str, tmp_path) -> None:
    if isinstance(audio, str) and audio == "FOLDER":
        audio = tmp_path
    elif isinstance(audio, str) and audio == "EMPTYFILE":
        audio = tmp_path / "empty.flac"
        audio.write_bytes(b"")
    elif isinstance(audio, str) and audio == "TEXTFILE":
        audio = tmp_path / "notes.mp3"
        audio.write_text("these are not audio samples\n" * 40)
    server = Recorder()
    async with scripted_server(server) as url:
        with pytest.raises(bk.AudioError, match=fix):
            await fast(url).transcribe(audio, sr)
    assert server.connections == 0
