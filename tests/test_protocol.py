"""The sans-I/O core: strings in, typed events out; every decision of the protocol notes (docs: reference/protocol)."""

from __future__ import annotations

import base64
import json

import pytest

from bk_notebook.errors import ProtocolError
from bk_notebook.protocol import (
    MAX_PROMPT_CHARS,
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
    WordTiming,
)

from helpers import reply

pytestmark = pytest.mark.pure  # the tests mutation testing runs (TESTING.md)

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


def test_a_final_s_language_crosses_the_wire_when_the_server_names_one() -> None:
    head = '{"bk":{"service":"stt","type":"audioStream","status":200,"message":"","data":'
    named = head + '{"final":"halo","start":0.1,"end":0.5,"language":"id"}}}'
    assert ServerProtocol.final("halo", 0.1, 0.5, "id") == named
    assert ServerProtocol.final("halo", 0.1, 0.5, "") == ServerProtocol.final("halo", 0.1, 0.5)  # no key at all
    client = streaming()
    assert client.receive(ServerProtocol.final("halo", 0.1, 0.5, "id")) == [Final("halo", 0.1, 0.5, "id")]
    for odd in ('""', "7", "null", '["id"]'):  # what is not a language code is dropped, never raised
        reply = head + '{"final":"halo","start":0.1,"end":0.5,"language":' + odd + "}}}"
        assert client.receive(reply) == [Final("halo", 0.1, 0.5, None)]


# ------------------------------------------------------------------ the exact texts on the wire
def test_the_server_s_replies_byte_for_byte() -> None:
    # Compact JSON, non-ASCII text as is (not \u escapes), times rounded to the millisecond.
    s = ServerProtocol(new_session_id=lambda: SID)
    head = '{"bk":{"service":"stt","type":'
    assert s.accept() == head + f'"audioConn","status":200,"message":"","data":{{"sess_id":"{SID}"}}}}}}'
    assert s.session_id == SID
    assert ServerProtocol.acknowledge() == head + '"audioStream","status":200,"message":""}}'
    assert ServerProtocol.partial("café") == \
        head + '"audioStream","status":200,"message":"","data":{"partial":"café"}}}'
    assert ServerProtocol.final("naïve", 0.12345, 1.98765) == \
        head + '"audioStream","status":200,"message":"","data":{"final":"naïve","start":0.123,"end":1.988}}}'
    assert s.stopped() == head + '"audioStop","status":200,"message":""}}'
    assert s.session_id is None and s.state is State.CLOSED
    assert s.refuse("worker not available") == head + '"audioConn","status":400,"message":"worker not available"}}'
    assert ServerProtocol.error("audioStream", "boom", 500) == head + '"audioStream","status":500,"message":"boom"}}'
    assert ServerProtocol.error("", "unreadable") == '{"bk":{"service":"stt","status":400,"message":"unreadable"}}'


def test_the_client_s_requests_byte_for_byte() -> None:
    p = ClientProtocol()
    assert p.connect() == '{"bk":{"service":"stt","type":"audioConn"}}'
    p.receive(reply("audioConn", sess_id=SID))
    assert p.audio(b"\x01\x00\x02\x00") == \
        f'{{"bk":{{"service":"stt","type":"audioStream","sess_id":"{SID}","data":{{"audio":"AQACAA=="}}}}}}'
    assert p.stop() == f'{{"bk":{{"service":"stt","type":"audioStop","sess_id":"{SID}"}}}}'


def test_a_session_id_at_the_top_level_of_the_reply_and_a_new_session_after_the_stop() -> None:
    p = ClientProtocol()
    assert p.session_id is None
    p.connect()
    top = json.dumps({"bk": {"type": "audioConn", "status": 200, "sess_id": "top-level"}})
    assert p.receive(top) == [Connected("top-level")] and p.session_id == "top-level"
    assert '"sess_id":"top-level"' in p.audio(b"")


def test_replies_are_counted_for_flow_control() -> None:
    p = streaming()
    assert (p.answered, p.acknowledged) == (0, 0)
    ack = json.dumps({"bk": {"type": "audioStream", "status": 200}})
    assert p.receive(ack) == [] and (p.answered, p.acknowledged) == (1, 1)
    assert p.receive(ack) == [] and (p.answered, p.acknowledged) == (2, 2)  # the same text: the fast path
    assert p.receive(ack) == [] and (p.answered, p.acknowledged) == (3, 3)
    assert p.receive(reply("audioStream", partial="he")) == [Partial("he")]
    assert p.receive(reply("audioStream", final="hello", start=0, end="0.5")) == [Final("hello", 0.0, 0.5)]
    assert (p.answered, p.acknowledged) == (5, 3)
    assert p.receive(reply("audioStream", final="x", start="soon", end=None)) == [Final("x", None, None)]
    p.stop()
    assert p.receive(ack) == [] and (p.answered, p.acknowledged) == (7, 4)  # still answers while stopping


def test_an_acknowledgement_text_is_only_a_shortcut_while_streaming() -> None:
    # The remembered acknowledgement must not swallow the same text in another state: there it is an error.
    p = streaming()
    ack = json.dumps({"bk": {"type": "audioStream", "status": 200}})
    p.receive(ack)
    p.stop()
    assert p.receive(reply("audioStop")) == [Stopped()]
    with pytest.raises(ProtocolError, match="^unexpected audioStream reply while closed$"):
        p.receive(ack)
    fresh = ClientProtocol()
    fresh.connect()
    with pytest.raises(ProtocolError, match="^unexpected audioStream reply while connecting$"):
        fresh.receive(ack)


def test_a_reply_that_brought_something_is_not_remembered_as_the_acknowledgement() -> None:
    p = streaming()
    partial = reply("audioStream", partial="same")
    assert p.receive(partial) == [Partial("same")]
    assert p.receive(partial) == [Partial("same")]  # parsed again, not taken for an acknowledgement
    assert (p.answered, p.acknowledged) == (2, 0)
    p.receive(json.dumps({"bk": {"type": "audioStream", "status": 200}}))
    binary_ack = json.dumps({"bk": {"type": "audioStream", "status": 200}}).encode()
    with pytest.raises(ProtocolError, match=f"binary frame of {len(binary_ack)} bytes"):
        p.receive(binary_ack)  # the same bytes as the remembered text, but a binary frame


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00\x01", "received a binary frame of 2 bytes; the protocol is JSON text"),
        ("x" * 100, f"received text that is not JSON: '{'x' * 80}'"),
        ("[" + "1," * 50 + "1]", f"received JSON without a 'bk' object: '{('[' + '1,' * 50)[:80]}'"),
        (json.dumps({"bk": {"type": 7}}), "unknown message type 7"),
        (json.dumps({"bk": {"type": "audioStream", "status": "ok"}}), "status is not a number: 'ok'"),
        (json.dumps({"bk": {"type": "audioStream", "status": None}}), "status is not a number: None"),
    ],
)
def test_the_client_core_s_errors_say_what_was_wrong(data: object, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        streaming().receive(data)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_server_errors_carry_the_text_the_server_gave() -> None:
    for bk, text in [({"message": "m", "error": "e"}, "m"), ({"message": "", "error": "e"}, "e"),
                     ({}, "no message given"), ({"message": 42}, "42")]:
        p = streaming()
        assert p.receive(json.dumps({"bk": {"type": "audioStream", "status": 503, **bk}})) == \
            [ServerError(503, text, "audioStream")]
        assert p.state is State.FAILED
    p = streaming()
    assert p.receive(json.dumps({"bk": {"type": "audioStream"}})) == []  # no status: 200


def test_the_client_core_s_illegal_steps_say_which_states_allow_them() -> None:
    p = ClientProtocol()
    with pytest.raises(ProtocolError) as info:
        p.audio(b"\x00\x00")
    assert str(info.value) == "cannot send audio while idle; only when streaming"
    with pytest.raises(ProtocolError) as info:
        p.stop()
    assert str(info.value) == "cannot send audioStop while idle; only when streaming"
    s = streaming()
    with pytest.raises(ProtocolError) as info:
        s.receive(reply("audioConn", sess_id=SID))
    assert str(info.value) == "unexpected audioConn reply while streaming"
    with pytest.raises(ProtocolError) as info:
        ClientProtocol().receive(reply("audioStream", partial="x"))
    assert str(info.value) == "unexpected audioStream reply while idle"
    with pytest.raises(ProtocolError) as info:
        ServerProtocol().stopped()
    assert str(info.value) == "illegal step from idle to closed"
    with pytest.raises(ProtocolError) as info:
        streaming().audio(b"\x00")
    assert str(info.value) == "PCM chunks hold whole 16-bit samples; got 1 bytes"


def test_a_failed_session_stays_failed() -> None:
    p = streaming()
    p.fail()
    assert p.state is State.FAILED
    p.fail()
    assert p.state is State.FAILED


def _session() -> ServerProtocol:
    s = ServerProtocol(new_session_id=lambda: SID)
    s.accept()
    return s


LONG_TYPE = "t" * 50
AUDIO_LIMIT = 65536 * 4 // 3 + 4  # the longest base64 text taken, a little over 64 KiB decoded


@pytest.mark.parametrize(
    "message, expected",
    [
        (b"{}", BadRequest("received a binary frame of 2 bytes; send JSON as a text frame", "")),
        ("[" * 33 + "]" * 33, BadRequest("the message is nested too deeply or holds too many arrays and objects "
                                         "(at most 32)", "")),
        ("{" * 20 + "[" * 13, BadRequest("the message is nested too deeply or holds too many arrays and objects "
                                         "(at most 32)", "")),
        ("{oops", BadRequest("received text that is not JSON: '{oops' (Expecting property name enclosed in "
                             "double quotes at 1)", "")),
        ("9" * 5000, BadRequest("the message holds a number too long to read", "")),
        ("[1]", BadRequest("the message must be a JSON object with 'bk', got an array", "")),
        ('"bk"', BadRequest("the message must be a JSON object with 'bk', got a string", "")),
        ("true", BadRequest("the message must be a JSON object with 'bk', got a boolean", "")),
        ("null", BadRequest("the message must be a JSON object with 'bk', got null", "")),
        ("1.5", BadRequest("the message must be a JSON object with 'bk', got a number", "")),
        ("{}", BadRequest("received JSON with no 'bk' object", "")),
        ('{"bk": [1]}', BadRequest("received JSON with 'bk' as an array, not an object", "")),
        ('{"bk": {"service": "stt"}}', BadRequest("the message has no 'type'", "")),
        ('{"bk": {"type": {}}}', BadRequest("'type' must be a string, got an object", "")),
        (_req(LONG_TYPE), BadRequest(f"unknown message type '{'t' * 40}'...", "")),
        (_req("x" * 40), BadRequest(f"unknown message type '{'x' * 40}'", "")),
        (_req("audioConn"), BadRequest("a session is already open on this connection; send audioStop first",
                                       "audioConn")),
        (_req("audioStop"), BadRequest("sess_id is missing", "audioStop")),
        (_req("audioStop", sess_id=""), BadRequest("sess_id is missing", "audioStop")),
        (_req("audioStop", sess_id=5), BadRequest("sess_id must be a string, got a number", "audioStop")),
        (_req("audioStop", sess_id="f" * 32), BadRequest("unknown sess_id: it does not belong to this connection",
                                                         "audioStop")),
        (_req("audioStream", sess_id=SID, data=[]), BadRequest("data must be an object holding 'audio', got an array",
                                                               "audioStream")),
        (_req("audioStream", sess_id=SID, data={}), BadRequest("data.audio is missing: send base64 of raw 16-bit PCM",
                                                               "audioStream")),
        (_req("audioStream", sess_id=SID, data={"audio": 3}),
         BadRequest("data.audio must be a base64 string, got a number", "audioStream")),
        (_req("audioStream", sess_id=SID, data={"audio": "A" * (AUDIO_LIMIT + 1)}),
         BadRequest("audio chunk is over 65536 bytes; send 3200-byte chunks", "audioStream")),
        (_req("audioStream", sess_id=SID, data={"audio": "AA AA"}),
         BadRequest("data.audio is not valid base64", "audioStream")),
        (_req("audioStream", sess_id=SID, data={"audio": "AA=="}),
         BadRequest("audio has an odd number of bytes (1); send whole 16-bit samples", "audioStream")),
    ],
)
def test_every_bad_request_gets_its_own_short_message(message: str | bytes, expected: BadRequest) -> None:
    assert _session().receive(message) == expected


def test_the_largest_requests_taken() -> None:
    nested: list[object] = []
    for _ in range(29):
        nested = [nested]  # 30 arrays, in 2 objects: 32 containers, the most taken
    s = _session()
    assert s.receive(_req("audioStop", sess_id=SID, x=nested)) == StopRequest()
    largest = "AAAA" * (AUDIO_LIMIT // 4)  # base64 comes in fours: AUDIO_LIMIT - 1 characters
    assert s.receive(_req("audioStream", sess_id=SID, data={"audio": largest})) == \
        AudioRequest(bytes(len(largest) // 4 * 3))
    assert s.receive(_req("audioStream", sess_id=SID, data={"audio": "A" * AUDIO_LIMIT})) == \
        BadRequest("data.audio is not valid base64", "audioStream")  # at the limit: read, and not base64
    assert s.receive(_req("audioStream", sess_id=SID)) == \
        BadRequest("data.audio is missing: send base64 of raw 16-bit PCM", "audioStream")


def test_a_server_session_that_ended_can_open_again() -> None:
    s = ServerProtocol(new_session_id=iter(["one", "two"]).__next__)
    assert s.session_id is None
    assert json.loads(s.accept())["bk"]["data"]["sess_id"] == "one"
    s.stopped()
    assert s.receive(_req("audioStop", sess_id="one")) == BadRequest("no open session: send audioConn first",
                                                                      "audioStop")
    assert json.loads(s.accept())["bk"]["data"]["sess_id"] == "two" and s.state is State.STREAMING


def test_a_reply_without_a_type_is_read_as_the_one_awaited() -> None:
    p = ClientProtocol()
    p.connect()
    assert p.receive(json.dumps({"bk": {"status": 200, "data": {"sess_id": SID}}})) == [Connected(SID)]
    assert p.receive(json.dumps({"bk": {"status": 200, "data": {"partial": "x"}}})) == [Partial("x")]


def test_every_empty_acknowledgement_is_counted_whatever_its_spelling() -> None:
    p = streaming()
    short, long = (json.dumps({"bk": {"type": "audioStream", "status": 200}}),
                   json.dumps({"bk": {"type": "audioStream", "status": 200, "message": ""}}))
    for text in (short, long, short, long):  # each differs from the one remembered: parsed every time
        assert p.receive(text) == []
    assert (p.answered, p.acknowledged) == (4, 4)


@pytest.mark.parametrize("sess_id", [123, "", None, ["s"]])
def test_an_accepted_audioconn_needs_a_session_id_string(sess_id: object) -> None:
    p = ClientProtocol()
    p.connect()
    with pytest.raises(ProtocolError) as info:
        p.receive(json.dumps({"bk": {"type": "audioConn", "status": 200, "data": {"sess_id": sess_id}}}))
    assert str(info.value) == "the audioConn reply has status 200 but no sess_id"


def test_an_empty_frame_is_an_error_before_and_after_the_first_acknowledgement() -> None:
    # Found by a mutation run: the remembered acknowledgement started as "", so an empty frame before
    # the first real one was counted as an acknowledgement, while after one it was an error.
    for acknowledged_first in (False, True):
        p = streaming()
        if acknowledged_first:
            assert p.receive(json.dumps({"bk": {"type": "audioStream", "status": 200}})) == []
        answered = p.answered
        with pytest.raises(ProtocolError):
            p.receive("")
        assert p.answered == answered and p.state is State.FAILED


# ------------------------------------------------------------- the local server's extensions
def test_a_final_s_word_timings_go_on_the_wire_rounded_to_the_millisecond() -> None:
    words = [WordTiming("halo", 0.12345, 0.45678, 0.98765), WordTiming("dunia", 0.5, 0.9)]
    assert ServerProtocol.final("halo dunia", 0.1, 0.9, "id", words) == (
        '{"bk":{"service":"stt","type":"audioStream","status":200,"message":"","data":'
        '{"final":"halo dunia","start":0.1,"end":0.9,"language":"id","words":['
        '{"word":"halo","start":0.123,"end":0.457,"probability":0.988},'
        '{"word":"dunia","start":0.5,"end":0.9,"probability":null}]}}}')
    assert "words" not in ServerProtocol.final("halo", 0.1, 0.5, "id", [])  # none: no key at all


def test_a_client_reads_the_word_timings_the_server_sent() -> None:
    words = (WordTiming("halo", 0.1, 0.4, 0.9), WordTiming("dunia", 0.5, 0.9))
    assert streaming().receive(ServerProtocol.final("halo dunia", 0.1, 0.9, None, words)) == \
        [Final("halo dunia", 0.1, 0.9, None, words)]


def test_a_word_without_its_text_or_both_times_is_skipped_and_the_rest_kept() -> None:
    entries = [
        "halo",  # not an object
        {"start": 0.0, "end": 0.1},  # no text
        {"word": 7, "start": 0.0, "end": 0.1},  # a text that is not a string
        {"word": "no end", "start": 0.1},
        {"word": "no start", "end": 0.2},
        {"word": "late", "start": "soon", "end": 0.3},  # a time that is not a number
        {"word": "dunia", "start": "0.5", "end": 0.9, "probability": "0.75"},  # numbers as strings: read
        {"word": "lagi", "start": 1.0, "end": 1.2, "probability": "high"},  # a probability that is not one
    ]
    got = streaming().receive(reply("audioStream", final="dunia lagi", start=0.5, end=1.2, words=entries))
    assert got == [Final("dunia lagi", 0.5, 1.2, None,
                         (WordTiming("dunia", 0.5, 0.9, 0.75), WordTiming("lagi", 1.0, 1.2, None)))]
    for not_a_list in ({"word": "x", "start": 0, "end": 1}, "x", None):
        assert streaming().receive(reply("audioStream", final="x", words=not_a_list)) == [Final("x")]


def test_a_prompt_goes_in_the_audioconn_request_and_the_server_reads_it_back() -> None:
    client = ClientProtocol()
    request = client.connect("Jakarta, Surabaya")
    assert request == '{"bk":{"service":"stt","type":"audioConn","data":{"prompt":"Jakarta, Surabaya"}}}'
    assert ServerProtocol().receive(request) == ConnRequest("Jakarta, Surabaya")
    assert ServerProtocol().receive(_req("audioConn", data={"prompt": None})) == ConnRequest()
    assert ServerProtocol().receive(_req("audioConn", data=["prompt"])) == ConnRequest()


def test_a_prompt_that_is_not_a_string_is_refused_before_anything_is_sent() -> None:
    client = ClientProtocol()
    with pytest.raises(ProtocolError) as info:
        client.connect(5)  # type: ignore[arg-type]
    assert str(info.value) == "prompt must be a str, got int"
    assert client.state is State.IDLE  # nothing sent: the request can still be made


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"prompt": 5}, BadRequest("data.prompt must be a string, got a number", "audioConn")),
        ({"prompt": ["a"]}, BadRequest("data.prompt must be a string, got an array", "audioConn")),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)},
         BadRequest(f"data.prompt is over {MAX_PROMPT_CHARS} characters", "audioConn")),
        ({"prompt": "x" * MAX_PROMPT_CHARS}, ConnRequest("x" * MAX_PROMPT_CHARS)),  # the longest taken
    ],
)
def test_the_server_checks_the_prompt_of_an_audioconn(data: object, expected: object) -> None:
    assert ServerProtocol().receive(_req("audioConn", data=data)) == expected
