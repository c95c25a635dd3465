"""The local server: the spec's JSON shapes, its sample client, bad input, capacity, auth."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

import bk_notebook as bk
from bk_notebook.server import local_server

from helpers import FIXTURES

SPEC_KEYS = {"service", "type", "status", "message"}


def pcm_of(name: str) -> bytes:
    data, sr = sf.read(FIXTURES / f"{name}.wav", dtype="int16")
    assert sr == 16000
    return data.tobytes()


def tone_pcm(seconds: float, silence: float = 0.5) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    gap = np.zeros(int(16000 * silence))
    return (np.concatenate([gap, 0.3 * np.sin(2 * np.pi * 300 * t), gap]) * 32767).astype("<i2").tobytes()


async def sample_style_session(url: str, pcm: bytes) -> list[dict[str, Any]]:
    """Stream the way the service's own Python sample does: plain websockets and its dicts."""
    replies: list[dict[str, Any]] = []
    async with connect(url) as ws:
        await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
        conn = json.loads(await ws.recv())
        replies.append(conn)
        sess_id = conn["bk"]["data"]["sess_id"]

        async def receive() -> None:
            while True:
                reply = json.loads(await ws.recv())
                replies.append(reply)
                if reply["bk"]["type"] == "audioStop":
                    return

        receiver = asyncio.create_task(receive())
        for i in range(0, len(pcm), 3200):
            msg = {"bk": {"service": "stt", "sess_id": sess_id, "type": "audioStream",
                          "data": {"audio": base64.b64encode(pcm[i:i + 3200]).decode("utf-8")}}}
            await ws.send(json.dumps(msg))
        await ws.send(json.dumps({"bk": {"service": "stt", "sess_id": sess_id, "type": "audioStop"}}))
        await asyncio.wait_for(receiver, 30)
    return replies


@pytest.mark.slow
async def test_the_spec_sample_client_gets_session_partials_finals_and_stop(sphinx_server) -> None:
    replies = await sample_style_session(sphinx_server.url, pcm_of("hello"))
    conn, *stream, stop = [r["bk"] for r in replies]
    assert set(conn) == SPEC_KEYS | {"data"} and conn["type"] == "audioConn" and conn["status"] == 200
    assert len(conn["data"]["sess_id"]) == 32 and int(conn["data"]["sess_id"], 16) >= 0
    partials = [r["data"]["partial"] for r in stream if "partial" in r.get("data", {})]
    finals = [r["data"] for r in stream if "final" in r.get("data", {})]
    acks = [r for r in stream if "data" not in r]
    assert all(set(r) <= SPEC_KEYS | {"data"} and r["type"] == "audioStream" and r["status"] == 200 for r in stream)
    assert all(set(r) == SPEC_KEYS for r in acks)  # an acknowledgement: status 200, no data
    assert partials and finals and acks
    assert len(stream) == -(-len(pcm_of("hello")) // 3200)  # one reply per chunk (no final is left for the stop)
    assert "hello" in finals[0]["final"] and "world" in finals[0]["final"]
    assert 0 <= finals[0]["start"] < finals[0]["end"] <= len(pcm_of("hello")) / 32000
    assert set(stop) == SPEC_KEYS and stop["type"] == "audioStop" and stop["status"] == 200


@pytest.mark.slow
@pytest.mark.parametrize("name, words", [
    ("hello", {"hello", "world", "recognition"}),
    ("tomorrow", {"tomorrow", "morning"}),
    ("numbers", {"two", "three", "four", "five", "six"}),
])
async def test_fixture_sentences_come_back_with_their_content_words(sphinx_server, name: str, words: set[str]) -> None:
    t = await bk.Client(sphinx_server.url).transcribe(FIXTURES / f"{name}.wav", speed=None)
    assert words <= set(t.text.split()), t.text
    assert all(r["session_id"] == t.session_id and "timing" not in r for r in t.finals)


async def test_finals_carry_times_of_the_session_audio(energy_server) -> None:
    pcm = tone_pcm(1.0) + tone_pcm(0.4)
    t = await bk.Client(energy_server.url).transcribe(np.frombuffer(pcm, "<i2"), 16000, speed=None)
    assert [(r["text"], r["start"], r["end"]) for r in t.finals] == [
        ("sound 1.00 s", 0.5, 1.5), ("sound 0.40 s", 2.5, 2.9)]


def _stream(sid_field: Any = "SID", **data: Any) -> str:
    """An audioStream request; "SID" is replaced by the open session's id."""
    return "SID:" + json.dumps({"bk": {"service": "stt", "type": "audioStream", "sess_id": sid_field, **data}})


def _deep(depth: int, inner: str = "0") -> str:
    return "[" * depth + inner + "]" * depth


# The malformed-input table: every shape a careless or hostile client sends, each answered with a 400
# whose message says what is wrong, on a connection that stays usable.  (message, regex its reply matches)
BAD: list[tuple[str | bytes, str]] = [
    ("{not json", "not JSON"),
    ("", "not JSON"),
    (json.dumps({"bk": {"service": "stt", "type": "audioWhat"}}), "unknown message type"),
    (json.dumps({"bk": {"service": "stt", "type": "audioStream", "sess_id": "f" * 32, "data": {"audio": "AAAA"}}}),
     "does not belong"),
    (json.dumps({"bk": {"service": "stt", "type": "audioStream", "data": {"audio": "AAAA"}}}), "sess_id is missing"),
    ("STREAM:!!notbase64", "not valid base64"),
    ("STREAM:" + base64.b64encode(b"abc").decode(), "odd number"),
    ("STREAM:" + base64.b64encode(bytes(70000)).decode(), "over 65536"),
    # Deep nesting: at the top, inside bk, in every field (was: a traceback and a closed connection).
    (_deep(1000), "nested too deeply"),
    (_deep(60_000), "nested too deeply"),
    ('{"bk": {"type": ' + _deep(1000, '"audioConn"') + "}}", "nested too deeply"),
    (_stream(data={"audio": "AAAAAA==", "x": json.loads(_deep(20))}), r"^$"),  # 20 deep: accepted
    (_stream(data={"audio": "AAAAAA==", "x": json.loads(_deep(30))}), "nested too deeply"),
    (_stream(data={"audio": "AAAAAA==", "x": [[]] * 40}), "too many arrays and objects"),
    ('{"bk": {"type": "audioStream", "sess_id": "x", "data": ' + "{\"a\": " * 5000 + "0" + "}" * 5000 + "}}",
     "nested too deeply"),
    # Huge numbers.
    ('{"bk": {"type": "audioStream", "sess_id": 1' + "0" * 5000 + "}}", "number too long|sess_id must be a string"),
    ('{"bk": {"type": "audioStream", "sess_id": 1e999999}}', "sess_id must be a string, got a number"),
    ('{"bk": {"type": "audioStream", "sess_id": NaN}}', "sess_id must be a string"),
    ('{"bk": {"type": 1e999999}}', "'type' must be a string, got a number"),
    (_stream(data={"audio": 10**300}), "data.audio must be a base64 string, got a number"),
    # Invalid UTF-8 and unpaired surrogates.
    (b'{"bk": {"type": "audioConn\xff\xfe"}}', "binary frame of 31 bytes"),
    (b"\x00\x01\x02", "binary frame of 3 bytes"),
    ('{"bk": {"type": "audio\\ud800Conn"}}', "unknown message type 'audio\\\\ud800Conn'"),
    (_stream("\udc80"), "does not belong"),
    # Wrong JSON types for every field.
    ("[1, 2]", "must be a JSON object with 'bk', got an array"),
    ('"audioConn"', "got a string"),
    ("42", "got a number"),
    ("null", "got null"),
    (json.dumps({"data": {}}), "no 'bk' object"),
    (json.dumps({"bk": ["audioConn"]}), "'bk' as an array"),
    (json.dumps({"bk": "audioConn"}), "'bk' as a string"),
    (json.dumps({"bk": 7}), "'bk' as a number"),
    (json.dumps({"bk": {"service": "stt"}}), "no 'type'"),
    (json.dumps({"bk": {"type": None}}), "no 'type'"),
    (json.dumps({"bk": {"type": 3}}), "'type' must be a string, got a number"),
    (json.dumps({"bk": {"type": True}}), "'type' must be a string, got a boolean"),
    (json.dumps({"bk": {"type": ["audioConn"]}}), "'type' must be a string, got an array"),
    (json.dumps({"bk": {"type": {"audioConn": 1}}}), "'type' must be a string, got an object"),
    (json.dumps({"bk": {"type": "x" * 100_000}}), r"unknown message type 'x{40}'\.\.\.$"),
    (_stream(12345, data={"audio": "AAAA"}), "sess_id must be a string, got a number"),
    (_stream(["SID"], data={"audio": "AAAA"}), "sess_id must be a string, got an array"),
    (_stream({"id": 1}, data={"audio": "AAAA"}), "sess_id must be a string, got an object"),
    (_stream(True, data={"audio": "AAAA"}), "sess_id must be a string, got a boolean"),
    (_stream("", data={"audio": "AAAA"}), "sess_id is missing"),
    (_stream(data=["AAAA"]), "data must be an object holding 'audio', got an array"),
    (_stream(data="AAAA"), "data must be an object holding 'audio', got a string"),
    (_stream(data=5), "data must be an object holding 'audio', got a number"),
    (_stream(data={}), "data.audio is missing"),
    (_stream(data={"audio": None}), "data.audio is missing"),
    (_stream(data={"audio": 5}), "data.audio must be a base64 string, got a number"),
    (_stream(data={"audio": ["AAAA"]}), "data.audio must be a base64 string, got an array"),
    (_stream(data={"audio": {"b64": "AAAA"}}), "data.audio must be a base64 string, got an object"),
    (_stream(data={"audio": False}), "data.audio must be a base64 string, got a boolean"),
    (json.dumps({"bk": {"type": "audioStop", "sess_id": 0}}), "sess_id must be a string, got a number"),
    (json.dumps({"bk": {"type": "audioConn"}}), "a session is already open"),
]


async def test_every_bad_input_gets_its_400_and_the_connection_stays_usable(energy_server, caplog) -> None:
    import logging
    import re

    caplog.set_level(logging.DEBUG, logger="bk_notebook.server")
    async with connect(energy_server.url, max_size=None) as ws:
        await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioStream", "sess_id": "x",
                                         "data": {"audio": "AAAA"}}}))
        early = json.loads(await ws.recv())["bk"]
        assert early["status"] == 400 and "send audioConn first" in early["message"]
        await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
        sess_id = json.loads(await ws.recv())["bk"]["data"]["sess_id"]
        for message, pattern in BAD:
            if isinstance(message, str) and message.startswith("STREAM:"):
                message = json.dumps({"bk": {"service": "stt", "type": "audioStream", "sess_id": sess_id,
                                             "data": {"audio": message[7:]}}})
            elif isinstance(message, str) and message.startswith("SID:"):
                message = message[4:].replace('"SID"', json.dumps(sess_id))
            await ws.send(message)
            if pattern == r"^$":  # accepted: a probe's 400 follows whatever the chunk got (nothing, or a 200)
                await ws.send("{")
            while True:
                text = await asyncio.wait_for(ws.recv(), 10)
                assert isinstance(text, str) and len(text) < 500, (pattern, text[:200])
                answer = json.loads(text)["bk"]
                if answer["status"] != 200 or pattern != r"^$":
                    break
            assert answer["status"] == 400 and answer["service"] == "stt", (pattern, answer)
            if pattern == r"^$":
                assert "not JSON" in answer["message"]
            else:
                assert re.search(pattern, answer["message"]), (pattern, answer)
                assert answer["message"].isascii()
        # Still the same session, still usable.
        await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioStop", "sess_id": sess_id}}))
        assert json.loads(await ws.recv())["bk"] == {"service": "stt", "type": "audioStop", "status": 200,
                                                    "message": ""}
    t = await bk.Client(energy_server.url).transcribe(np.frombuffer(tone_pcm(0.6), "<i2"), 16000, speed=None)
    assert t.text == "sound 0.60 s"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]  # never a traceback


def test_deep_nesting_is_refused_whatever_the_recursion_limit() -> None:
    """A notebook (or a test tool) may raise the recursion limit; the server's bound must not move with it."""
    import sys

    from bk_notebook.protocol import BadRequest, ServerProtocol

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        result = ServerProtocol().receive(_deep(5_000))
    finally:
        sys.setrecursionlimit(limit)
    assert isinstance(result, BadRequest) and "nested too deeply" in result.message


async def test_invalid_utf8_in_a_text_frame_closes_that_connection_with_1007_only(energy_server, caplog) -> None:
    """RFC 6455 requires failing the connection (code 1007): no reply is possible, but no traceback either."""
    import logging

    caplog.set_level(logging.DEBUG, logger="bk_notebook.server")
    async with connect(energy_server.url) as ws:
        async with ws.send_context():
            ws.protocol.send_text(b'{"bk": {"type": "audioConn\xff"}}')
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1007
    t = await bk.Client(energy_server.url).transcribe(np.frombuffer(tone_pcm(0.3), "<i2"), 16000, speed=None)
    assert t.text == "sound 0.30 s"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_an_oversized_frame_closes_only_that_connection(energy_server) -> None:
    async with connect(energy_server.url, max_size=None) as ws:
        await ws.send("x" * (1 << 20))
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1009  # message too big
    t = await bk.Client(energy_server.url).transcribe(np.frombuffer(tone_pcm(0.3), "<i2"), 16000, speed=None)
    assert t.text == "sound 0.30 s"


async def test_a_third_session_gets_worker_not_available_and_retry_succeeds() -> None:
    async with local_server(engine="energy", workers=2) as server:
        first, second = bk.Client(server.url).stream(), bk.Client(server.url).stream()
        await first.__aenter__()
        await second.__aenter__()
        async with connect(server.url) as ws:
            await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
            refused = json.loads(await ws.recv())["bk"]
        assert refused == {"service": "stt", "type": "audioConn", "status": 400, "message": "worker not available"}
        with pytest.raises(bk.WorkerUnavailable):
            await bk.Client(server.url, connect_retries=2, retry_backoff=0.01).transcribe(np.zeros(1600), 16000)

        async def free_a_worker_soon() -> None:
            await asyncio.sleep(0.2)
            await first.send(np.frombuffer(tone_pcm(0.2), "<i2"))
            await first.stop()

        freeing = asyncio.create_task(free_a_worker_soon())
        patient = bk.Client(server.url, connect_retries=8, retry_backoff=0.1)
        t = await patient.transcribe(np.frombuffer(tone_pcm(0.5), "<i2"), 16000, speed=None)
        await freeing
        assert t.text == "sound 0.50 s"
        await second.stop()


async def test_two_concurrent_sessions_do_not_see_each_others_text(energy_server) -> None:
    a, b = np.frombuffer(tone_pcm(0.7), "<i2"), np.frombuffer(tone_pcm(1.3), "<i2")
    ta, tb = await asyncio.gather(
        bk.Client(energy_server.url).transcribe(a, 16000, speed=20.0),
        bk.Client(energy_server.url).transcribe(b, 16000, speed=20.0),
    )
    assert ta.text == "sound 0.70 s" and tb.text == "sound 1.30 s"
    assert ta.session_id != tb.session_id


async def test_auth_on_refuses_missing_or_wrong_tokens_with_401() -> None:
    async with local_server(engine="energy", workers=1, tokens=("good-token",)) as server:
        for url in (server.url, server.url + "?token=bad-token"):
            with pytest.raises(InvalidStatus) as info:
                async with connect(url):
                    pass
            assert info.value.response.status_code == 401
        with pytest.raises(bk.AuthError):
            await bk.Client(server.url, token="bad-token").transcribe(np.zeros(1600), 16000)
        t = await bk.Client(server.url, token="good-token").transcribe(
            np.frombuffer(tone_pcm(0.3), "<i2"), 16000, speed=None)
        assert t.text == "sound 0.30 s"


async def test_auth_off_accepts_any_token(energy_server) -> None:
    t = await bk.Client(energy_server.url, token="anything").transcribe(
        np.frombuffer(tone_pcm(0.3), "<i2"), 16000, speed=None)
    assert t.text == "sound 0.30 s"


async def test_wrong_path_is_404(energy_server) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(energy_server.url.replace("/v1/prod/stream", "/other")):
            pass
    assert info.value.response.status_code == 404


async def test_idle_sessions_are_closed_with_a_message() -> None:
    async with local_server(engine="energy", workers=1, idle_timeout=0.3) as server:
        async with connect(server.url) as ws:
            await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
            await ws.recv()
            notice = json.loads(await asyncio.wait_for(ws.recv(), 5))["bk"]
            assert notice["status"] == 400 and "idle" in notice["message"]
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1000
        # Its worker is free again.
        t = await bk.Client(server.url).transcribe(np.frombuffer(tone_pcm(0.3), "<i2"), 16000, speed=None)
        assert t.text == "sound 0.30 s"


def test_server_log_never_shows_tokens(caplog) -> None:
    import logging

    caplog.set_level(logging.DEBUG)

    async def run(url: str) -> None:
        await bk.Client(url, token="tok-SECRET-123").transcribe(np.frombuffer(tone_pcm(0.3), "<i2"), 16000,
                                                                 speed=None)

    with local_server(engine="energy", workers=1, tokens=("tok-SECRET-123",)) as server:
        asyncio.run(run(server.url))
    assert "session " in caplog.text and "1.3 s of audio" in caplog.text
    assert "tok-SECRET-123" not in caplog.text


def test_unknown_engine_is_a_usage_error() -> None:
    with pytest.raises(bk.UsageError, match="unknown engine"):
        local_server(engine="nope")
    with pytest.raises(bk.UsageError, match="cannot load engine"):
        local_server(engine="no_such_module:Engine")


def test_a_user_engine_by_module_and_class(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_engine.py").write_text(
        "from bk_notebook.protocol import Final\n"
        "class Counter:\n"
        "    def __init__(self): self.reset()\n"
        "    def reset(self): self.n = 0\n"
        "    def feed(self, pcm): self.n += len(pcm); return []\n"
        "    def flush(self): return [Final(f'{self.n} bytes', None, None)]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with local_server(engine="my_engine:Counter", workers=1) as server:
        t = asyncio.run(bk.Client(server.url).transcribe(np.zeros(8000, dtype=np.int16), 16000, speed=None))
    assert t.finals[0]["text"] == "16000 bytes" and t.finals[0]["end"] == 0.5


@pytest.mark.slow
async def test_audiostop_without_any_audio_is_answered(sphinx_server) -> None:
    async with bk.Client(sphinx_server.url).stream() as s:
        t = await s.stop()
    assert t.finals == [] and t.duration == 0
    async with bk.Client(sphinx_server.url).stream() as s:
        await s.send(b"\x00\x00" * 10)  # shorter than one endpointer frame
        t = await s.stop()
    assert t.finals == []


async def test_engines_in_worker_processes_give_the_same_results() -> None:
    a, b = np.frombuffer(tone_pcm(0.7), "<i2"), np.frombuffer(tone_pcm(1.3), "<i2")
    async with local_server(engine="energy", workers=2, processes=True) as server:
        ta, tb = await asyncio.gather(bk.Client(server.url).transcribe(a, 16000, speed=None),
                                      bk.Client(server.url).transcribe(b, 16000, speed=None))
        again = await bk.Client(server.url).transcribe(a, 16000, speed=None)  # a reused engine process
    assert (ta.text, tb.text, again.text) == ("sound 0.70 s", "sound 1.30 s", "sound 0.70 s")
    assert ta.finals[0]["start"] == 0.5


async def test_the_idle_close_sends_the_finals_of_what_was_heard_first() -> None:
    # Speech, then the client sends nothing more (no audioStop): the idle close flushes the engine first.
    async with local_server(engine="energy", workers=1, idle_timeout=0.5) as server:
        with pytest.raises(bk.ServiceError) as info:
            async with bk.Client(server.url).stream() as stream:
                await stream.send(tone_pcm(1.0, silence=0.0))
                async for _ in stream.events():
                    pass
    transcript = info.value.transcript
    assert transcript is not None and transcript.text == "sound 1.00 s" and not transcript.complete
    assert "idle for 0.5 s" in str(info.value) and "finals of the audio it sent came first" in str(info.value)


@pytest.mark.slow  # waits out the real 10 s no-audio rule
async def test_a_session_that_sends_no_audio_gives_its_worker_back_before_the_idle_timeout() -> None:
    # The rule itself (ConnectionSettings.idle_timeout_now) has its pure test in test_server_flow.py.
    async with local_server(engine="energy", workers=1, idle_timeout=600.0) as server:
        async with connect(server.url) as ws:
            await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
            assert json.loads(await ws.recv())["bk"]["status"] == 200
            # The one worker is held; a session that sends nothing loses it after 10 s, not 600.
            notice = json.loads(await asyncio.wait_for(ws.recv(), 60))["bk"]
            assert notice["status"] == 400 and "idle for 10 s, no audio sent" in notice["message"]
        t = await bk.Client(server.url).transcribe(np.frombuffer(tone_pcm(0.3), "<i2"), 16000, speed=None)
        assert t.text == "sound 0.30 s"
