"""The local server's flow: one reply per chunk, a reader that keeps reading, bounded queues."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect

from bk_notebook.protocol import Final, Partial, ServerProtocol, WordTiming
from bk_notebook.server import ServerConfig
from bk_notebook.server.engines import EnergyEngine
from bk_notebook.server.local import LocalServer
from bk_notebook.server.session import (
    MESSAGE_OVERHEAD,
    ChunkAnswers,
    ConnectionSettings,
    Inbox,
    Refused,
    _reason,
    audio_seconds,
)

from helpers import FIXTURES, require

ACK = {"service": "stt", "type": "audioStream", "status": 200, "message": ""}
STOPPED = {"service": "stt", "type": "audioStop", "status": 200, "message": ""}
SAMPLE = FIXTURES.parent.parent / "bk_notebook" / "data" / "sample.wav"


def tone(seconds: float, silence: float = 0.5) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    gap = np.zeros(int(16000 * silence))
    return (np.concatenate([gap, 0.3 * np.sin(2 * np.pi * 300 * t), gap]) * 32767).astype("<i2")


def chunks_of(pcm: bytes, size: int = 3200) -> list[bytes]:
    return [pcm[i:i + size] for i in range(0, len(pcm), size)]


def audio_message(sess_id: str, chunk: bytes) -> str:
    return json.dumps({"bk": {"service": "stt", "sess_id": sess_id, "type": "audioStream",
                              "data": {"audio": base64.b64encode(chunk).decode()}}})


def stop_message(sess_id: str) -> str:
    return json.dumps({"bk": {"service": "stt", "sess_id": sess_id, "type": "audioStop"}})


async def open_session(ws: Any) -> str:
    await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 30))["bk"]
    assert reply["status"] == 200, reply
    return str(reply["data"]["sess_id"])


async def unpaced_session(url: str, messages: list[bytes | str], timeout: float = 120) -> list[dict[str, Any]]:
    """Send every chunk (or raw message) without waiting, then audioStop; every reply after audioConn."""
    async with connect(url) as ws:
        sess_id = await open_session(ws)
        for m in messages:
            await ws.send(audio_message(sess_id, m) if isinstance(m, bytes) else m.replace("SESS", sess_id))
        await ws.send(stop_message(sess_id))
        replies = []
        while not replies or replies[-1] != STOPPED:
            replies.append(json.loads(await asyncio.wait_for(ws.recv(), timeout))["bk"])
    return replies


def server(**config: Any) -> LocalServer:
    return LocalServer(ServerConfig(**config))


# ---------------------------------------------------------------- the reply policy, without a socket
@pytest.mark.pure
def test_every_chunk_gets_one_reply_final_wins_and_extra_finals_ride_on_later_replies() -> None:
    answers = ChunkAnswers()
    f1, f2, f3 = Final("one", 0.1, 0.5), Final("two", 0.6, 0.9), Final("three", 1.0, 1.4)
    replies = [
        answers.chunk(1600, []),
        answers.chunk(1600, [Partial("on")]),
        answers.chunk(1600, [Partial("on")]),  # same text again: nothing new
        answers.chunk(1600, [Partial("one"), f1, f2, Partial("th")]),  # two finals and the next partial
        answers.chunk(1600, []),
        answers.chunk(1600, []),
        answers.chunk(1600, [f3]),
    ]
    assert replies == [
        ServerProtocol.acknowledge(),
        ServerProtocol.partial("on"),
        ServerProtocol.acknowledge(),
        ServerProtocol.final("one", 0.1, 0.5),
        ServerProtocol.final("two", 0.6, 0.9),
        ServerProtocol.partial("th"),  # newer than the finals, not yet shown
        ServerProtocol.final("three", 1.0, 1.4),
    ]
    assert answers.stop([]) == [] and answers.finals == 3


@pytest.mark.pure
def test_finals_held_at_the_stop_come_before_the_flush_and_partials_are_dropped() -> None:
    answers = ChunkAnswers()
    assert answers.chunk(3200, [Final("a", 0, 1), Final("b", 1, 2), Final("c", 2, 3)]) == ServerProtocol.final(
        "a", 0, 1)
    assert answers.stop([Partial("d"), Final("d", 3, 4)]) == [
        ServerProtocol.final("b", 1, 2), ServerProtocol.final("c", 2, 3), ServerProtocol.final("d", 3, 4)]


@pytest.mark.pure
def test_an_engine_without_times_gets_them_from_the_audio() -> None:
    answers = ChunkAnswers()
    answers.chunk(16000, [])
    assert answers.chunk(8000, [Final("x", None, None)]) == ServerProtocol.final("x", 0.0, 1.5)
    assert answers.stop([Final("y", None, None)]) == [ServerProtocol.final("y", 1.5, 1.5)]


@pytest.mark.pure
def test_acknowledgement_is_status_200_without_data() -> None:
    assert json.loads(ServerProtocol.acknowledge()) == {"bk": ACK}


# ------------------------------------------------------------------------ the inbox, without a socket
@pytest.mark.pure
async def test_the_inbox_refuses_beyond_its_bound_in_order_and_lets_small_requests_through() -> None:
    inbox = Inbox(limit=10_000)
    chunk = "x" * 4000
    assert inbox.offer("a", 4000 + MESSAGE_OVERHEAD) and inbox.offer("b", 4000 + MESSAGE_OVERHEAD)
    assert not inbox.offer("c", 4000 + MESSAGE_OVERHEAD) and not inbox.offer(chunk, 4000 + MESSAGE_OVERHEAD)
    assert inbox.offer("stop", 60 + MESSAGE_OVERHEAD)  # a request without audio still gets in
    assert inbox.size <= inbox.limit + Inbox.SMALL_ALLOWANCE
    got = [await asyncio.wait_for(inbox.get(), 5) for _ in range(len(inbox))]  # bounded: a hang fails
    assert got[:2] == ["a", "b"] and isinstance(got[2], Refused) and got[2].count == 2 and got[3] == "stop"
    assert inbox.size == 0 and inbox.offer("d", 4000 + MESSAGE_OVERHEAD)  # room again once decoded


@pytest.mark.pure
async def test_the_inbox_bound_is_exact_and_the_small_allowance_is_for_small_messages_only() -> None:
    small = Inbox.SMALL + MESSAGE_OVERHEAD  # the largest message that counts as small
    inbox = Inbox(limit=10_000)
    assert not inbox.offer("too big", 10_001)  # an empty inbox refuses one message over its bound
    assert inbox.size == 0 and len(inbox) == 1  # the refusal's marker costs nothing
    assert inbox.offer("fits", 10_000)  # exactly the bound
    assert not inbox.offer("no room", small + 1)
    assert inbox.offer("small", small) and inbox.offer("smaller", small - 300)  # beyond the bound
    assert inbox.size == 10_000 + 2 * small - 300
    inbox.put_last("end")  # a marker gets in whatever the size, at no cost
    assert inbox.size == 10_000 + 2 * small - 300
    got = [await asyncio.wait_for(inbox.get(), 5) for _ in range(len(inbox))]  # bounded: a hang fails
    assert isinstance(got[0], Refused) and got[0].count == 1 and isinstance(got[2], Refused)
    assert [got[1], *got[3:]] == ["fits", "small", "smaller", "end"] and inbox.size == 0


@pytest.mark.pure
def test_a_final_keeps_the_language_its_engine_named_in_its_reply() -> None:
    answers = ChunkAnswers()
    reply = json.loads(answers.chunk(1600, [Final("halo", 0.1, 0.5, "id")]))["bk"]
    assert reply["data"] == {"final": "halo", "start": 0.1, "end": 0.5, "language": "id"}
    [flushed] = answers.stop([Final("hello", 0.6, 0.9, "en")])
    assert json.loads(flushed)["bk"]["data"]["language"] == "en"


@pytest.mark.pure
def test_a_message_length_tells_the_seconds_of_audio_it_carries() -> None:
    sid = "0123456789abcdef0123456789abcdef"
    for chunk_bytes in (3200, 32000, 1):
        seconds = chunk_bytes / 2 / 16000
        assert audio_seconds(len(audio_message(sid, bytes(chunk_bytes)))) == pytest.approx(seconds, rel=0.01, abs=1e-4)
    assert audio_seconds(0) == audio_seconds(100) == 0  # shorter than the JSON around any audio: none


@pytest.mark.pure
def test_the_answers_count_the_audio_decoded() -> None:
    answers = ChunkAnswers()
    answers.chunk(1600, [])
    answers.chunk(800, [Final("x", 0.0, 0.1)])
    assert answers.samples == 2400 and answers.finals == 1


@pytest.mark.pure
def test_a_final_keeps_its_word_timings_in_its_reply_and_in_the_flush() -> None:
    answers = ChunkAnswers()
    halo, dunia = WordTiming("halo", 0.1, 0.4, 0.9), WordTiming("dunia", 0.5, 0.8)
    reply = json.loads(answers.chunk(1600, [Final("halo", 0.1, 0.4, None, (halo,))]))["bk"]
    assert reply["data"]["words"] == [{"word": "halo", "start": 0.1, "end": 0.4, "probability": 0.9}]
    [flushed] = answers.stop([Final("dunia", 0.5, 0.8, None, (dunia,))])
    assert json.loads(flushed)["bk"]["data"]["words"] == [
        {"word": "dunia", "start": 0.5, "end": 0.8, "probability": None}]


@pytest.mark.pure
def test_a_session_that_has_sent_no_audio_gets_the_shorter_idle_limit() -> None:
    # Moved here from the slow server test that waits the real 10 s out.
    assert ConnectionSettings(60.0, 5.0).idle_timeout_now(heard=False, in_session=True) == 10.0
    assert ConnectionSettings(60.0, 5.0).idle_timeout_now(heard=True, in_session=True) == 60.0
    assert ConnectionSettings(60.0, 5.0).idle_timeout_now(heard=False, in_session=False) == 60.0
    assert ConnectionSettings(3.0, 5.0).idle_timeout_now(heard=False, in_session=True) == 3.0


@pytest.mark.pure
def test_an_engine_s_failure_reaches_the_client_as_one_short_line() -> None:
    assert _reason(RuntimeError("model file\n  is   missing\t(see log)")) == \
        "RuntimeError: model file is missing (see log)"
    assert _reason(ValueError("x" * 400)) == "ValueError: " + "x" * 300  # a long message is cut
    assert _reason(MemoryError()) == "MemoryError"  # no text: the type alone, no dangling colon
    assert _reason(OSError(" \n ")) == "OSError"  # only white space counts as no text


# ------------------------------------------------------------------------------ the running server
async def test_each_chunk_gets_exactly_its_reply_in_order_through_the_server() -> None:
    pcm = np.concatenate([tone(0.4), tone(0.3, 0.2), tone(1.2)]).tobytes()
    big = np.concatenate([tone(0.3, 0.3), tone(0.3, 0.3)]).tobytes()  # one chunk ending two stretches
    plan: list[bytes | str] = [*chunks_of(pcm[:16000]), big, *chunks_of(pcm[16000:])]
    odd = len(plan) // 2
    plan.insert(odd, audio_message("SESS", b"abc"))  # a bad chunk: its 400 is its one reply
    # The expected replies, computed without the server from the same engine and policy.
    engine, answers, expected = EnergyEngine(), ChunkAnswers(), []
    for m in plan:
        if isinstance(m, bytes):
            expected.append(json.loads(answers.chunk(len(m) // 2, engine.feed(m)))["bk"])
        else:
            expected.append({"service": "stt", "type": "audioStream", "status": 400, "message": ""})
    expected += [json.loads(f)["bk"] for f in answers.stop(engine.flush())] + [STOPPED]
    with server(engine="energy", workers=1) as s:
        replies = await unpaced_session(s.url, plan)
    assert replies[odd]["status"] == 400 and "odd number" in replies[odd]["message"]
    replies[odd]["message"] = ""
    assert replies == expected
    assert sum("final" in r.get("data", {}) for r in replies) == 5
    big_at = plan.index(big)
    assert [r["data"]["final"] for r in replies[big_at:big_at + 2]] == ["sound 0.30 s"] * 2  # the 2nd rode along
    assert sum(r == ACK for r in replies) > 10  # most chunks bring nothing new


@pytest.mark.slow  # an engine lagging for seconds, at real time
async def test_pings_are_answered_while_the_engine_lags_and_a_backlog_is_not_idleness() -> None:
    with server(engine="tests.server.slow_engine:SlowEngine", workers=1, idle_timeout=3.0,
                engine_options={"inner": "energy", "speed": 1.0}) as s:
        async with connect(s.url) as ws:
            sess_id = await open_session(ws)
            chunks = chunks_of(np.concatenate([tone(1.0)] * 3).tobytes())  # 6 s: 6 s of decoding
            for c in chunks:
                await ws.send(audio_message(sess_id, c))
            await ws.send(stop_message(sess_id))
            pong = await ws.ping()
            replies: list[dict[str, Any]] = []
            pong_before_stop_reply = None
            while not replies or replies[-1] != STOPPED:
                replies.append(json.loads(await asyncio.wait_for(ws.recv(), 60))["bk"])
                if pong_before_stop_reply is None and replies[-1] == STOPPED:
                    pong_before_stop_reply = pong.done()
            assert pong_before_stop_reply  # the reader kept reading behind the engine
            # 6 s of decoding was not idleness: the idle clock starts at the last reply, so a
            # client that thinks for a moment (far less than idle_timeout) still has its connection.
            await asyncio.sleep(0.3)
            await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 30))["bk"]["status"] == 200
    assert len(replies) == len(chunks) + 1 and all(r["status"] == 200 for r in replies)
    assert sum("final" in r.get("data", {}) for r in replies) == 3


async def test_one_decode_longer_than_the_idle_timeout_is_not_idleness() -> None:
    # Nothing queued behind the chunk, nothing received while it decodes: the session is busy, not idle.
    with server(engine="tests.server.slow_engine:SlowEngine", workers=1, idle_timeout=0.3,
                engine_options={"inner": "energy", "speed": 0.2}) as s:
        async with connect(s.url) as ws:
            sess_id = await open_session(ws)
            await ws.send(audio_message(sess_id, bytes(6400)))  # 0.2 s of audio, 1 s of decoding
            assert json.loads(await asyncio.wait_for(ws.recv(), 30))["bk"] == ACK
            await ws.send(stop_message(sess_id))
            assert json.loads(await asyncio.wait_for(ws.recv(), 30))["bk"] == STOPPED


async def test_a_client_beyond_the_queue_bound_is_refused_with_400_not_dropped() -> None:
    with server(engine="tests.server.slow_engine:SlowEngine", workers=1, max_queued_seconds=1.0,
                engine_options={"inner": "energy", "speed": 2.0}) as s:
        chunks = chunks_of(bytes(5 * 32000))  # silence: no final, so one reply per chunk, then audioStop
        replies = await unpaced_session(s.url, list(chunks))
    assert len(replies) == len(chunks) + 1 and replies[-1] == STOPPED
    refused = [r for r in replies if r["status"] == 400]
    assert refused and all("refused" in r["message"] and r["type"] == "audioStream" for r in refused)
    assert len(replies) - 1 - len(refused) >= 9  # about a second was queued and decoded


async def test_max_utterance_seconds_cuts_continuous_sound() -> None:
    with server(engine="energy", workers=1, max_utterance_seconds=2.0) as s:
        replies = await unpaced_session(s.url, chunks_of(tone(5.0).tobytes()))
    finals = [r["data"] for r in replies if "final" in r.get("data", {})]
    assert [(f["start"], f["end"]) for f in finals] == [(0.5, 2.5), (2.5, 4.5), (4.5, 5.5)]


@pytest.mark.slow
async def test_the_service_sample_flow_on_two_minutes_gets_every_final() -> None:
    """The spec's sample: websockets defaults (keepalive pings), 10 ms between chunks, no waiting."""
    require("pocketsphinx", "the default engine")
    from bk_notebook.server.engines import PocketSphinxEngine

    pcm = np.tile(sf.read(SAMPLE, dtype="int16")[0], 15).tobytes()  # ~126 s
    replies: list[dict[str, Any]] = []
    with server(engine="pocketsphinx", workers=1) as s:
        async with connect(s.url) as ws:
            sess_id = await open_session(ws)
            done = asyncio.Event()

            async def receive() -> None:
                while not done.is_set():
                    replies.append(json.loads(await ws.recv())["bk"])
                    if replies[-1]["type"] == "audioStop":
                        done.set()

            receiver = asyncio.create_task(receive())
            for c in chunks_of(pcm):
                await ws.send(audio_message(sess_id, c))
                await asyncio.sleep(0.01)
            await ws.send(stop_message(sess_id))
            await asyncio.wait_for(receiver, 600)
    engine, expected = PocketSphinxEngine(), []
    for c in chunks_of(pcm):
        expected += [e for e in engine.feed(c) if isinstance(e, Final)]
    expected += [e for e in engine.flush() if isinstance(e, Final)]
    finals = [r["data"] for r in replies if "final" in r.get("data", {})]
    assert [(f["final"], f["start"], f["end"]) for f in finals] == [
        (e.text, round(e.start, 3), round(e.end, 3)) for e in expected]
    assert len(finals) >= 28 and replies[-1] == STOPPED
    assert len(replies) == len(chunks_of(pcm)) + 1 and all(r["status"] == 200 for r in replies)


# ------------------------------------------------------------------------------------------- logs
async def test_the_log_tells_a_stop_then_close_from_a_close_without_stop(caplog) -> None:
    caplog.set_level(logging.INFO, logger="bk_notebook.server")
    with server(engine="tests.server.slow_engine:SlowEngine", workers=1,
                engine_options={"inner": "energy", "speed": 4.0}) as s:
        for send_stop in (True, False):
            async with connect(s.url) as ws:
                sess_id = await open_session(ws)
                for c in chunks_of(tone(1.0).tobytes()):
                    await ws.send(audio_message(sess_id, c))
                if send_stop:
                    await ws.send(stop_message(sess_id))
            await wait_until(lambda: s.busy_workers == 0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("session ")]
    assert len(lines) == 2
    assert lines[0].endswith("client sent audioStop and closed before the reply")
    assert lines[1].endswith("connection closed before audioStop")


async def wait_until(condition: Any, timeout: float = 30.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


@pytest.mark.slow
async def test_a_noise_client_unpaced_for_300_s_beside_a_real_time_client(capfd) -> None:
    """Issue 12.2: the real-time client gets every reply and its own words; the noise is cut into
    bounded utterances; stderr stays quiet (it was one PocketSphinx warning per frame).  The pauses
    the real-time client sees are measured in benchmarks/bench_server_noise.py, not asserted here."""
    require("pocketsphinx", "the default engine")
    from bk_notebook.server.engines import PocketSphinxEngine

    noise = np.random.default_rng(3).integers(-32768, 32767, 16000 * 300, dtype=np.int16).tobytes()
    speech = sf.read(SAMPLE, dtype="int16")[0].tobytes()

    async def real_time(url: str) -> list[dict[str, Any]]:
        async with connect(url) as ws:
            sess_id = await open_session(ws)
            replies: list[dict[str, Any]] = []

            async def receive() -> None:
                while not replies or replies[-1] != STOPPED:
                    replies.append(json.loads(await ws.recv())["bk"])

            receiver = asyncio.create_task(receive())
            for c in chunks_of(speech):
                await ws.send(audio_message(sess_id, c))
                await asyncio.sleep(0.1)  # a microphone: 100 ms of audio per 100 ms
            await ws.send(stop_message(sess_id))
            await asyncio.wait_for(receiver, 600)
        return replies

    with server(engine="pocketsphinx", workers=2) as s:
        noisy = asyncio.create_task(unpaced_session(s.url, chunks_of(noise), timeout=600))
        paced = await real_time(s.url)
        noise_replies = await noisy
    engine, expected = PocketSphinxEngine(), []
    for c in chunks_of(speech):
        expected += [e for e in engine.feed(c) if isinstance(e, Final)]
    expected += [e for e in engine.flush() if isinstance(e, Final)]
    assert len(paced) == len(chunks_of(speech)) + 1 and all(r["status"] == 200 for r in paced)
    assert [r["data"]["final"] for r in paced if "final" in r.get("data", {})] == [e.text for e in expected]
    noise_finals = [r["data"] for r in noise_replies if "final" in r.get("data", {})]
    assert noise_replies[-1] == STOPPED and all(r["status"] == 200 for r in noise_replies)
    assert len(noise_finals) >= 5 and all(f["end"] - f["start"] <= 20.03 for f in noise_finals)
    err = capfd.readouterr().err
    assert len(err.encode()) < 64 * 1024, err[-2000:]
