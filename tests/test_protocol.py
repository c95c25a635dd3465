"""The sans-I/O core: strings in, typed events out; every row of PROTOCOL-NOTES.md."""

from __future__ import annotations

import base64
import json

import pytest

from bk_notebook.errors import ProtocolError
from bk_notebook.protocol import (
    AudioRequest,
    BadRequest,
    ClientProtocol,
    Connected,
    ConnRequest,
    Final,
    Partial,
    ServerError,
    ServerProtocol,
    State,
    Stopped,
    StopRequest,
)

from conftest import reply

SID = "0123456789abcdef0123456789abcdef"


def streaming() -> ClientProtocol:
    p = ClientProtocol()
    p.connect()
    assert p.receive(reply("audioConn", sess_id=SID)) == [Connected(SID)]
    return p


def test_messages_match_the_spec() -> None:
    p = ClientProtocol()
    assert json.loads(p.connect()) == {"bk": {"service": "stt", "type": "audioConn"}}
    assert p.state is State.CONNECTING
    p.receive(reply("audioConn", sess_id=SID))
    assert p.state is State.STREAMING and p.session_id == SID
    msg = json.loads(p.audio(b"\x01\x00" * 1600))
    assert msg == {"bk": {"service": "stt", "type": "audioStream", "sess_id": SID,
                          "data": {"audio": base64.b64encode(b"\x01\x00" * 1600).decode()}}}
    assert json.loads(p.stop()) == {"bk": {"service": "stt", "type": "audioStop", "sess_id": SID}}
    assert p.state is State.STOPPING


@pytest.mark.parametrize("kind", ["audioConn", "AudioConn", "AUDIOCONN", "audioconn"])
def test_any_casing_of_type_is_accepted(kind: str) -> None:
    p = ClientProtocol()
    p.connect()
    assert p.receive(reply(kind, sess_id=SID)) == [Connected(SID)]


def test_partials_finals_and_stop() -> None:
    p = streaming()
    assert p.receive(reply("audioStream", partial="hel")) == [Partial("hel")]
    assert p.receive(reply("AudioStream", final="hello", start=0.5, end=1.25)) == [Final("hello", 0.5, 1.25)]
    assert p.receive(reply("audioStream", final="no times")) == [Final("no times", None, None)]
    p.stop()
    assert p.receive(reply("audioStream", final="late")) == [Final("late")]  # after audioStop, kept
    assert p.receive(reply("audioStop")) == [Stopped()]
    assert p.state is State.CLOSED


def test_final_wins_over_partial_in_one_reply() -> None:
    assert streaming().receive(reply("audioStream", partial="a", final="a b")) == [Final("a b")]


def test_status_200_without_data_is_an_acknowledgement() -> None:
    p = streaming()
    assert p.receive(reply("audioStream")) == []
    assert p.state is State.STREAMING


def test_placeholder_message_ignored_on_200() -> None:
    # The spec's examples fill "message" with "error message" even on success.
    assert streaming().receive(reply("audioStream", partial="x")) == [Partial("x")]


def test_error_text_from_message_then_error_field() -> None:
    p = streaming()
    events = p.receive(json.dumps({"bk": {"type": "audioStream", "status": 400, "message": "bad chunk"}}))
    assert events == [ServerError(400, "bad chunk", "audioStream")]
    assert p.state is State.FAILED
    q = streaming()
    events = q.receive(json.dumps({"bk": {"type": "audioStream", "status": 400, "error": "old style"}}))
    assert events == [ServerError(400, "old style", "audioStream")]


def test_refused_audioconn_can_be_retried() -> None:
    p = ClientProtocol()
    p.connect()
    events = p.receive(json.dumps({"bk": {"type": "audioConn", "status": 400, "message": "worker not available"}}))
    assert events == [ServerError(400, "worker not available", "audioConn")]
    assert p.state is State.IDLE
    p.connect()
    assert p.receive(reply("audioConn", sess_id=SID)) == [Connected(SID)]


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"\x00\x01", "binary frame"),
        ("not json", "not JSON"),
        ("[1, 2]", "without a 'bk'"),
        ('{"data": {}}', "without a 'bk'"),
        (json.dumps({"bk": {"type": "audioFoo", "status": 200}}), "unknown message type"),
    ],
)
def test_malformed_replies_raise_protocol_error(data: object, problem: str) -> None:
    p = streaming()
    with pytest.raises(ProtocolError, match=problem):
        p.receive(data)  # type: ignore[arg-type]
    assert p.state is State.FAILED


def test_conn_reply_without_session_id_is_a_protocol_error() -> None:
    p = ClientProtocol()
    p.connect()
    with pytest.raises(ProtocolError, match="no sess_id"):
        p.receive(reply("audioConn"))


@pytest.mark.parametrize("action", ["audio", "stop"])
def test_illegal_steps_raise(action: str) -> None:
    p = ClientProtocol()
    with pytest.raises(ProtocolError, match="cannot"):
        p.audio(b"\x00\x00") if action == "audio" else p.stop()
    s = streaming()
    s.stop()
    with pytest.raises(ProtocolError, match="while stopping"):
        s.audio(b"\x00\x00")
    with pytest.raises(ProtocolError, match="cannot send audioConn"):
        s.connect()


def test_odd_byte_chunks_are_refused_before_sending() -> None:
    with pytest.raises(ProtocolError, match="whole 16-bit samples"):
        streaming().audio(b"\x00")


# ----------------------------------------------------------------------------- server role
def _req(kind: str, **bk: object) -> str:
    return json.dumps({"bk": {"service": "stt", "type": kind, **bk}})


def test_server_session_lifecycle() -> None:
    s = ServerProtocol(new_session_id=lambda: SID)
    assert s.receive(_req("AudioConn")) == ConnRequest()
    conn = json.loads(s.accept())["bk"]
    assert conn == {"service": "stt", "type": "audioConn", "status": 200, "message": "", "data": {"sess_id": SID}}
    chunk = base64.b64encode(b"\x00\x01" * 10).decode()
    assert s.receive(_req("audioStream", sess_id=SID, data={"audio": chunk})) == AudioRequest(b"\x00\x01" * 10)
    assert s.receive(_req("audioStop", sess_id=SID)) == StopRequest()
    assert json.loads(s.stopped())["bk"]["type"] == "audioStop"
    assert s.receive(_req("audioConn")) == ConnRequest()  # a new session after audioStop


@pytest.mark.parametrize(
    "message, needle",
    [
        ("{not json", "not JSON"),
        (_req("audioFoo"), "unknown message type"),
        (json.dumps({"bk": {"service": "stt"}}), "no 'type'"),
        (_req("audioStream", sess_id=SID, data={"audio": "AAAA"}), "no open session"),
    ],
)
def test_server_bad_requests_before_a_session(message: str, needle: str) -> None:
    result = ServerProtocol().receive(message)
    assert isinstance(result, BadRequest) and needle in result.message


@pytest.mark.parametrize(
    "bk, needle",
    [
        ({"sess_id": "f" * 32, "data": {"audio": "AAAA"}}, "does not belong"),
        ({"data": {"audio": "AAAA"}}, "sess_id is missing"),
        ({"sess_id": SID, "data": {"audio": "!!!notbase64"}}, "not valid base64"),
        ({"sess_id": SID, "data": {"audio": base64.b64encode(b"abc").decode()}}, "odd number"),
        ({"sess_id": SID, "data": {"audio": base64.b64encode(b"\0" * 70000).decode()}}, "over 65536"),
        ({"sess_id": SID}, "data.audio is missing"),
    ],
)
def test_server_bad_audio_requests(bk: dict[str, object], needle: str) -> None:
    s = ServerProtocol(new_session_id=lambda: SID)
    s.receive(_req("audioConn"))
    s.accept()
    result = s.receive(_req("audioStream", **bk))
    assert isinstance(result, BadRequest) and needle in result.message
    assert result.stage == "audioStream"


def test_client_and_server_cores_agree() -> None:
    client, server = ClientProtocol(), ServerProtocol()
    assert server.receive(client.connect()) == ConnRequest()
    [connected] = client.receive(server.accept())
    assert isinstance(connected, Connected) and connected.session_id == server.session_id
    assert server.receive(client.audio(b"\x10\x00" * 1600)) == AudioRequest(b"\x10\x00" * 1600)
    assert client.receive(server.final("hi", 0.1, 0.5)) == [Final("hi", 0.1, 0.5)]
    assert server.receive(client.stop()) == StopRequest()
    assert client.receive(server.stopped()) == [Stopped()]
