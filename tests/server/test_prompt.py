"""A session's prompt: sent in ``audioConn``'s data only when asked, parsed by the server, handed to the engine.

Whisper's use of it is tested in ``test_vocabulary`` (slow); here an engine that echoes its prompt
(``tests/server/prompt_engine.py``) shows that the prompt reaches the engine, for one session only.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

import bk_notebook as bk
from bk_notebook.errors import ProtocolError
from bk_notebook.protocol import MAX_PROMPT_CHARS, BadRequest, ClientProtocol, ConnRequest, ServerProtocol

from helpers import reply, scripted_server

ECHO = "tests.server.prompt_engine:PromptEcho"


# ------------------------------------------------------------------------------ protocol
def test_audio_conn_carries_a_prompt_only_when_given() -> None:
    assert json.loads(ClientProtocol().connect()) == {"bk": {"service": "stt", "type": "audioConn"}}
    assert json.loads(ClientProtocol().connect("Kubernetes, LoRA")) == {
        "bk": {"service": "stt", "type": "audioConn", "data": {"prompt": "Kubernetes, LoRA"}}}
    assert json.loads(ClientProtocol().connect(""))["bk"]["data"] == {"prompt": ""}  # asked for: sent as given
    with pytest.raises(ProtocolError, match="prompt must be a str"):
        ClientProtocol().connect(3)  # type: ignore[arg-type]


def test_the_server_reads_the_prompt_and_refuses_a_bad_one() -> None:
    def conn(data: Any) -> Any:
        return ServerProtocol().receive(json.dumps({"bk": {"service": "stt", "type": "audioConn", "data": data}}))

    assert ServerProtocol().receive(ClientProtocol().connect()) == ConnRequest()
    assert ServerProtocol().receive(ClientProtocol().connect("halo")) == ConnRequest("halo")
    assert conn({"other": 1}) == ConnRequest() and conn("not an object") == ConnRequest()
    bad = conn({"prompt": ["a"]})
    assert isinstance(bad, BadRequest) and "data.prompt must be a string" in bad.message
    long = conn({"prompt": "x" * (MAX_PROMPT_CHARS + 1)})
    assert isinstance(long, BadRequest) and str(MAX_PROMPT_CHARS) in long.message
    assert conn({"prompt": "x" * MAX_PROMPT_CHARS}) == ConnRequest("x" * MAX_PROMPT_CHARS)


# ------------------------------------------------------------------------------ the client
async def test_the_client_sends_the_prompt_it_was_given_and_nothing_otherwise() -> None:
    seen: list[dict[str, Any]] = []

    async def handler(ws: Any) -> None:
        async for message in ws:
            bk_ = json.loads(message)["bk"]
            if bk_["type"] == "audioConn":
                seen.append(bk_)
                await ws.send(reply("audioConn", sess_id="s1"))
            elif bk_["type"] == "audioStop":
                await ws.send(reply("audioStop"))
            else:
                await ws.send(reply("audioStream"))

    async with scripted_server(handler) as url:
        client = bk.Client(url)
        await client.transcribe(bk.sample_path(), speed=None)
        await client.transcribe(bk.sample_path(), speed=None, prompt="Kubernetes")
    assert "data" not in seen[0] and seen[1]["data"] == {"prompt": "Kubernetes"}


async def test_a_prompt_that_is_not_text_is_refused_before_any_traffic() -> None:
    client = bk.Client("ws://127.0.0.1:9/nowhere")  # nothing listens: an attempt would be a ConnectError
    with pytest.raises(bk.UsageError, match="prompt must be a str"):
        await client.transcribe(bk.sample_path(), prompt=["Kubernetes"])  # type: ignore[arg-type]
    with pytest.raises(bk.UsageError, match="prompt must be a str"):
        client.stream(prompt=3)  # type: ignore[arg-type]
    pytest.importorskip("ipywidgets")
    from bk_notebook.widgets import Transcriber

    with pytest.raises(bk.UsageError, match="prompt must be a str"):
        Transcriber(client, prompt=3)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ through the server
@pytest.mark.parametrize("processes", [False, True])
async def test_a_sessions_prompt_reaches_the_engine_for_that_session_only(processes: bool) -> None:
    with bk.local_server(engine=ECHO, workers=1, processes=processes, prompt="server words") as server:
        client = bk.Client(server.url)
        asked = await client.transcribe(bk.sample_path(), speed=None, prompt="session words")
        plain = await client.transcribe(bk.sample_path(), speed=None)
    assert asked.finals and all(r["text"].startswith("session words | sound") for r in asked.finals)
    assert plain.finals and all(r["text"].startswith("server words | sound") for r in plain.finals)


@pytest.mark.parametrize("processes", [False, True])
async def test_a_prompt_to_an_engine_that_takes_none_is_ignored_and_logged(
        processes: bool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bk_notebook.server"), \
            bk.local_server(engine="energy", workers=1, processes=processes) as server:
        transcript = await bk.Client(server.url).transcribe(bk.sample_path(), speed=None, prompt="hello")
    assert transcript.complete and transcript.finals
    assert "prompt was ignored" in caplog.text


def test_auto_without_whisper_refuses_translation_and_drops_the_vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pocketsphinx")
    from bk_notebook.server.engines import PocketSphinxEngine, table

    monkeypatch.setattr(table, "resolve_engine", lambda name, model=None: "pocketsphinx")
    with pytest.raises(bk.MissingDependency, match="translate"):
        table.engine_factory("auto", task="translate")
    make = table.engine_factory("auto", prompt="x", hotwords="y", word_timestamps=False, task="transcribe")
    assert isinstance(make(), PocketSphinxEngine)
