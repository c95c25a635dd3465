"""Property-based fuzzing of the protocol core and of the running server (hypothesis)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bk_notebook as bk
from bk_notebook.errors import ProtocolError
from bk_notebook.protocol import AudioRequest, BadRequest, ClientProtocol, ConnRequest, ServerProtocol, StopRequest

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
types = st.sampled_from(["audioConn", "AUDIOSTREAM", "audioStream", "audioStop", "audiostop", "", "audioX", None])
bk_objects = st.fixed_dictionaries(
    {}, optional={"type": types | st.text(max_size=10), "sess_id": st.text(max_size=40) | st.integers(),
                  "status": st.integers(100, 600) | st.text(max_size=5), "message": json_values,
                  "data": st.dictionaries(st.sampled_from(["audio", "partial", "final", "start", "end", "sess_id"]),
                                          json_values | st.binary(max_size=50).map(lambda b: base64.b64encode(b)
                                                                                   .decode()), max_size=4)})
messages = (st.text(max_size=200) | st.binary(max_size=100) | json_values.map(json.dumps)
            | bk_objects.map(lambda bk: json.dumps({"bk": bk})))


@settings(max_examples=400, deadline=None)
@given(st.lists(messages, max_size=8))
def test_the_server_core_answers_every_message_with_a_request(batch: list[Any]) -> None:
    server = ServerProtocol()
    for message in batch:
        request = server.receive(message)
        assert isinstance(request, (ConnRequest, AudioRequest, StopRequest, BadRequest))
        if isinstance(request, ConnRequest):
            server.accept()
        elif isinstance(request, StopRequest):
            server.stopped()
        elif isinstance(request, BadRequest):
            reply = json.loads(ServerProtocol.error(request.stage, request.message))["bk"]
            assert reply["status"] == 400 and reply["message"]


@settings(max_examples=400, deadline=None)
@given(st.lists(messages, max_size=8), st.booleans())
def test_the_client_core_raises_only_protocol_errors(batch: list[Any], connect_first: bool) -> None:
    client = ClientProtocol()
    if connect_first:
        client.connect()
    for message in batch:
        try:
            client.receive(message)
        except ProtocolError:
            return  # the documented failure; the session is over


chunks = st.one_of(
    st.binary(max_size=4000).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=300),
    st.just(base64.b64encode(bytes(70_000)).decode()),  # oversized
)


@pytest.mark.slow  # a real server, 60 generated sessions: out of the fast loop
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(messages, chunks.map(lambda c: ("CHUNK", c))), min_size=1, max_size=12))
def test_the_running_server_answers_bad_messages_and_keeps_serving(energy_server, batch: list[Any]) -> None:
    from websockets.asyncio.client import connect

    async def run() -> None:
        tone = np.concatenate([np.zeros(4000), 0.3 * np.sin(np.arange(8000) / 3), np.zeros(8000)])
        healthy = asyncio.create_task(bk.Client(energy_server.url).transcribe(tone, 16000, speed=4.0))
        async with connect(energy_server.url, max_size=None) as ws:
            await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
            sid = json.loads(await ws.recv())["bk"]["data"]["sess_id"]
            for item in batch:
                if isinstance(item, tuple):
                    item = json.dumps({"bk": {"service": "stt", "type": "audioStream", "sess_id": sid,
                                              "data": {"audio": item[1]}}})
                await ws.send(item)
            sentinel = "SENTINEL-end-of-batch"
            await ws.send(sentinel)  # not JSON: its 400 reply quotes it, and comes after every other reply
            replies = []
            while True:
                answer = json.loads(await asyncio.wait_for(ws.recv(), 10))["bk"]
                replies.append(answer)
                if sentinel in answer.get("message", ""):
                    break
            # Every reply is in the spec's shape; the connection stayed open through the whole batch.
            assert all(isinstance(r["status"], int) and r["service"] == "stt" for r in replies)
            assert answer["status"] == 400
        t = await healthy  # the other session was unaffected
        assert t.text == "sound 0.50 s"

    asyncio.run(run())


@pytest.mark.slow  # a load test: 50 clients at once
async def test_load_50_clients_30_seconds_unpaced(energy_server) -> None:
    """Every session gets every final and its audioStop reply (numbers in BENCHMARKS.md)."""
    import time

    gap, sound = np.zeros(16000), 0.3 * np.sin(np.arange(16000) / 3)
    audio = np.concatenate([gap, sound] * 15)  # 30 s: 15 stretches of 1 s of sound
    server_sessions = 50
    started = time.monotonic()
    results = await asyncio.gather(*(bk.Client(energy_server.url, connect_retries=20, retry_backoff=0.05)
                                     .transcribe(audio, 16000, speed=None) for _ in range(server_sessions)))
    elapsed = time.monotonic() - started
    assert all(len(t.finals) == 15 and t.finals[-1]["text"] == "sound 1.00 s" for t in results)
    assert len({t.session_id for t in results}) == server_sessions
    print(f"\n50 sessions x 30 s unpaced: {elapsed:.2f} s wall, {50 * 30 / elapsed:.0f} audio s per wall s")
