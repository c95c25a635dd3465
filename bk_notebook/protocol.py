"""Sans-I/O core of the bahasakita streaming protocol, in both roles.

Theory of operation
-------------------
A session is three request kinds, each answered by the server::

    client                                  server
    audioConn              ─────────────▶   status 200 + data.sess_id   (or 400: no worker)
    audioStream(sess_id, base64 PCM) ───▶   status 200 + data.partial | data.final | nothing
    audioStop(sess_id)     ─────────────▶   remaining finals, then the audioStop reply

:class:`ClientProtocol` builds the client's messages and turns reply text into
typed events (:class:`Connected`, :class:`Partial`, :class:`Final`,
:class:`Stopped`, :class:`ServerError`).  :class:`ServerProtocol` does the
reverse for the local server.  Neither awaits or touches a socket: the asyncio
client and server only move the strings this module produces and consumes.

The tolerances are the ones the service's protocol notes decide (the documentation's protocol
reference lists each decision, "Decisions where the service's document leaves room"): any casing of
``type`` is accepted, the error text is read from ``message`` and then
``error`` (and ignored on status 200), a reply carrying both ``partial`` and
``final`` is a final, and a 200 reply to ``audioStream`` without data is an
acknowledgement that yields no event.  One more, for servers that put it
there: an ``audioConn`` reply may carry ``sess_id`` at the top level of ``bk``
instead of inside ``data``.

The client counts its ``audioStream`` answers (``answered``, and the empty
acknowledgements among them in ``acknowledged``): a server that answers every
chunk lets the client keep a send window.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from .errors import ProtocolError

__all__ = [
    "BUSY_STATUS",
    "BYTES_PER_SECOND",
    "CHUNK_BYTES",
    "SAMPLE_RATE",
    "AudioRequest",
    "BadRequest",
    "ClientProtocol",
    "ConnRequest",
    "Connected",
    "Event",
    "Final",
    "MAX_CHUNK_BYTES",
    "MAX_PROMPT_CHARS",
    "Partial",
    "Request",
    "ServerError",
    "ServerProtocol",
    "State",
    "StopRequest",
    "Stopped",
    "WordTiming",
]

#: Samples per second of the protocol's audio (mono, signed 16-bit PCM).
SAMPLE_RATE = 16_000
#: Bytes of PCM in one ``audioStream`` chunk (100 ms).
CHUNK_BYTES = 3_200
#: Bytes of PCM per second of audio.
BYTES_PER_SECOND = SAMPLE_RATE * 2
#: The status of an ``audioConn`` refused for want of a free worker: the client retries it.  Any other
#: refusal (the local server's 500 when its engine cannot start) is final: retrying would fail alike.
BUSY_STATUS = 400
#: The largest ``audioStream`` chunk the local server takes (decoded bytes).
MAX_CHUNK_BYTES = 64 * 1024

AUDIO_CONN, AUDIO_STREAM, AUDIO_STOP = "audioConn", "audioStream", "audioStop"
_CANONICAL = {t.lower(): t for t in (AUDIO_CONN, AUDIO_STREAM, AUDIO_STOP)}


class State(enum.Enum):
    """Where a session stands; see ``_LEGAL`` for the allowed steps."""

    IDLE = "idle"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    STOPPING = "stopping"
    CLOSED = "closed"
    FAILED = "failed"


_LEGAL: dict[State, set[State]] = {
    State.IDLE: {State.CONNECTING, State.FAILED},
    # A refused audioConn (no free worker) goes back to IDLE so it can be retried.
    State.CONNECTING: {State.STREAMING, State.IDLE, State.FAILED},
    # The server may end a session itself (idle timeout): STREAMING -> CLOSED.
    State.STREAMING: {State.STOPPING, State.CLOSED, State.FAILED},
    State.STOPPING: {State.CLOSED, State.FAILED},
    State.CLOSED: {State.IDLE},
    State.FAILED: set(),
}


# ----------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Connected:
    """``audioConn`` succeeded; ``session_id`` goes into every later request."""

    session_id: str


@dataclass(frozen=True)
class Partial:
    """The running hypothesis of the current utterance."""

    text: str


@dataclass(frozen=True)
class WordTiming:
    """One word of a final: ``start``/``end`` in seconds of the session's audio, ``probability`` if known."""

    text: str
    start: float
    end: float
    probability: float | None = None


@dataclass(frozen=True)
class Final:
    """A finished utterance; ``start``/``end`` are seconds when the server sends them.

    ``language`` is the utterance's language code when the server names it, and
    ``words`` its words with their times (extra keys of the local server: the
    hosted service does not send them, and a final without them is complete).
    """

    text: str
    start: float | None = None
    end: float | None = None
    language: str | None = None
    words: tuple[WordTiming, ...] = ()


@dataclass(frozen=True)
class Stopped:
    """The ``audioStop`` reply: the session is over and every final has arrived."""


@dataclass(frozen=True)
class ServerError:
    """A reply with a failure status, for the request named by ``stage``."""

    status: int
    message: str
    stage: str


Event = Union[Connected, Partial, Final, Stopped, ServerError]


def _encode(bk: dict[str, Any]) -> str:
    return json.dumps({"bk": bk}, separators=(",", ":"), ensure_ascii=False)


def _decode(data: str | bytes) -> dict[str, Any]:
    """Return the ``bk`` object of a message, or raise ProtocolError."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"received a binary frame of {len(data)} bytes; the protocol is JSON text")
    try:
        message = json.loads(data)
    except ValueError as exc:
        raise ProtocolError(f"received text that is not JSON: {data[:80]!r}") from exc
    bk = message.get("bk") if isinstance(message, dict) else None
    if not isinstance(bk, dict):
        raise ProtocolError(f"received JSON without a 'bk' object: {data[:80]!r}")
    return bk


def _type_of(bk: dict[str, Any]) -> str | None:
    kind = bk.get("type")
    if kind is None:
        return None
    if not isinstance(kind, str) or kind.lower() not in _CANONICAL:
        raise ProtocolError(f"unknown message type {kind!r}")
    return _CANONICAL[kind.lower()]


def _status_of(bk: dict[str, Any]) -> int:
    status = bk.get("status", 200)
    try:
        return int(status)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"status is not a number: {status!r}") from exc


def _error_text(bk: dict[str, Any]) -> str:
    text = bk.get("message") or bk.get("error") or "no message given"
    return str(text)


def _seconds(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _words(value: Any) -> tuple[WordTiming, ...]:
    """The ``words`` extension of a final; an entry without a text and both times is skipped, not fatal."""
    if not isinstance(value, list):
        return ()
    words = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("word"), str):
            continue
        start, end = _seconds(item.get("start")), _seconds(item.get("end"))
        if start is None or end is None:
            continue
        words.append(WordTiming(item["word"], start, end, _seconds(item.get("probability"))))
    return tuple(words)


def _preview(value: str, limit: int = 40) -> str:
    """A short ASCII quotation of client text for an error reply (never the whole, never unencodable)."""
    return ascii(value[:limit]) + ("..." if len(value) > limit else "")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


#: The most arrays and objects one client message may hold (the protocol's own messages hold 3 objects).
#: Counting them bounds nesting before the parser recurses, whatever the interpreter's recursion limit,
#: at the cost of two ``str.count`` calls (brackets inside strings count too: no real message has any).
MAX_CONTAINERS = 32


def _request_of(data: str | bytes) -> dict[str, Any]:
    """The ``bk`` object of a client's message; any malformed shape is a ProtocolError with a short message."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"received a binary frame of {len(data)} bytes; send JSON as a text frame")
    if data.count("[") + data.count("{") > MAX_CONTAINERS:
        raise ProtocolError(f"the message is nested too deeply or holds too many arrays and objects "
                            f"(at most {MAX_CONTAINERS})")
    try:
        message = json.loads(data)
    except RecursionError:
        raise ProtocolError("the message is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"received text that is not JSON: {_preview(data)} ({exc.msg} at {exc.pos})") from None
    except ValueError:  # e.g. an integer with more digits than Python converts
        raise ProtocolError("the message holds a number too long to read") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"the message must be a JSON object with 'bk', got {_json_type(message)}")
    bk = message.get("bk")
    if not isinstance(bk, dict):
        what = "no 'bk' object" if bk is None else f"'bk' as {_json_type(bk)}, not an object"
        raise ProtocolError(f"received JSON with {what}")
    return bk


class _Machine:
    """An explicit state with checked transitions."""

    def __init__(self) -> None:
        self.state = State.IDLE

    def _to(self, new: State) -> None:
        if new not in _LEGAL[self.state]:
            raise ProtocolError(f"illegal step from {self.state.value} to {new.value}")
        self.state = new

    def _require(self, action: str, *states: State) -> None:
        if self.state not in states:
            allowed = " or ".join(s.value for s in states)
            raise ProtocolError(f"cannot {action} while {self.state.value}; only when {allowed}")


# ----------------------------------------------------------------------- client role
class ClientProtocol(_Machine):
    """The client's side of one session: messages out, events in."""

    def __init__(self) -> None:
        super().__init__()
        self.session_id: str | None = None
        self._stream_prefix = ""
        self._ack: str | None = None  # the last acknowledgement's exact text: most replies repeat it
        self.answered = 0  # audioStream replies received (each answers one chunk on a per-chunk server)
        self.acknowledged = 0  # of which empty 200 acknowledgements: only a per-chunk server sends those

    def connect(self, prompt: str | None = None) -> str:
        """Return the ``audioConn`` request (again after a refusal, to retry).

        ``prompt`` (the local server's extension: text in the vocabulary to expect) goes in the
        request's ``data`` only when given; the service's documentation does not say how the
        hosted service treats a field it does not know.
        """
        self._require("send audioConn", State.IDLE)
        if prompt is not None and not isinstance(prompt, str):
            raise ProtocolError(f"prompt must be a str, got {type(prompt).__name__}")
        self._to(State.CONNECTING)
        if prompt is None:
            return _encode({"service": "stt", "type": AUDIO_CONN})
        return _encode({"service": "stt", "type": AUDIO_CONN, "data": {"prompt": prompt}})

    def audio(self, chunk: bytes | memoryview) -> str:
        """Return the ``audioStream`` request carrying ``chunk`` (raw PCM bytes)."""
        if self.state is not State.STREAMING:  # checked inline: this runs for every 100 ms of audio
            self._require("send audio", State.STREAMING)
        if len(chunk) % 2:
            raise ProtocolError(f"PCM chunks hold whole 16-bit samples; got {len(chunk)} bytes")
        # Built by hand: base64 needs no escaping, and this runs for every 100 ms of audio.
        return self._stream_prefix + base64.b64encode(chunk).decode("ascii") + '"}}}'

    def stop(self) -> str:
        """Return the ``audioStop`` request; replies are still read until :class:`Stopped`."""
        self._require("send audioStop", State.STREAMING)
        self._to(State.STOPPING)
        return _encode({"service": "stt", "type": AUDIO_STOP, "sess_id": self.session_id})

    def fail(self) -> None:
        """Mark the session failed (the connection was lost); no more sends."""
        if self.state is not State.FAILED:
            self.state = State.FAILED

    def receive(self, data: str | bytes) -> list[Event]:
        """Parse one reply and return the events it carries (zero or one)."""
        if data == self._ack and self.state in (State.STREAMING, State.STOPPING):
            self.answered += 1  # the same text as the last acknowledgement means the same: skip parsing it
            self.acknowledged += 1
            return []
        try:
            return self._remember_ack(data, self._receive(_decode(data)))
        except ProtocolError:
            self.fail()
            raise

    def _receive(self, bk: dict[str, Any]) -> list[Event]:
        kind = _type_of(bk) or self._implied_type()
        status = _status_of(bk)
        raw_data = bk.get("data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        if kind == AUDIO_CONN:
            return self._on_conn(bk, status, data)
        if self.state not in (State.STREAMING, State.STOPPING):
            raise ProtocolError(f"unexpected {kind} reply while {self.state.value}")
        if status != 200:
            self._to(State.FAILED)
            return [ServerError(status, _error_text(bk), kind)]
        if kind == AUDIO_STOP:
            self._to(State.CLOSED)
            return [Stopped()]
        self.answered += 1
        if "final" in data:  # a reply with both: the final wins
            language = data.get("language")
            return [Final(str(data["final"]), _seconds(data.get("start")), _seconds(data.get("end")),
                          language if isinstance(language, str) and language else None, _words(data.get("words")))]
        if "partial" in data:
            return [Partial(str(data["partial"]))]
        self.acknowledged += 1
        return []  # an acknowledgement

    def _remember_ack(self, data: str | bytes, events: list[Event]) -> list[Event]:
        if not events and isinstance(data, str) and self.state in (State.STREAMING, State.STOPPING):
            self._ack = data
        return events

    def _implied_type(self) -> str:
        return AUDIO_CONN if self.state is State.CONNECTING else AUDIO_STREAM

    def _on_conn(self, bk: dict[str, Any], status: int, data: dict[str, Any]) -> list[Event]:
        if self.state is not State.CONNECTING:
            raise ProtocolError(f"unexpected audioConn reply while {self.state.value}")
        if status != 200:
            self._to(State.IDLE)
            return [ServerError(status, _error_text(bk), AUDIO_CONN)]
        session_id = data.get("sess_id") or bk.get("sess_id")
        if not isinstance(session_id, str) or not session_id:
            raise ProtocolError("the audioConn reply has status 200 but no sess_id")
        self.session_id = session_id
        self._stream_prefix = (
            '{"bk":{"service":"stt","type":"audioStream","sess_id":'
            + json.dumps(session_id)
            + ',"data":{"audio":"'
        )
        self._to(State.STREAMING)
        return [Connected(session_id)]


# ----------------------------------------------------------------------- server role
@dataclass(frozen=True)
class ConnRequest:
    """The client asks for a session; ``prompt`` is the vocabulary it asked for (None: the server's)."""

    prompt: str | None = None


@dataclass(frozen=True)
class AudioRequest:
    """A chunk of raw PCM for the open session."""

    audio: bytes


@dataclass(frozen=True)
class StopRequest:
    """The client ends the session."""


@dataclass(frozen=True)
class BadRequest:
    """A request that gets a ``status: 400`` reply; the connection stays usable."""

    message: str
    stage: str  # the request's type, or "" when it could not be read


Request = Union[ConnRequest, AudioRequest, StopRequest, BadRequest]


#: The longest ``prompt`` the local server takes in ``audioConn`` (Whisper reads at most 223 tokens of it).
MAX_PROMPT_CHARS = 1000


def _conn_request(bk: dict[str, Any], kind: str) -> Request:
    data = bk.get("data")
    prompt = data.get("prompt") if isinstance(data, dict) else None
    if prompt is None:
        return ConnRequest()
    if not isinstance(prompt, str):
        return BadRequest(f"data.prompt must be a string, got {_json_type(prompt)}", kind)
    if len(prompt) > MAX_PROMPT_CHARS:
        return BadRequest(f"data.prompt is over {MAX_PROMPT_CHARS} characters", kind)
    return ConnRequest(prompt)


class ServerProtocol(_Machine):
    """The server's side of one connection; a connection holds one session at a time."""

    def __init__(self, new_session_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        super().__init__()
        self.session_id: str | None = None
        self._new_session_id = new_session_id

    def receive(self, data: str | bytes) -> Request:
        """Parse one client message into a request; bad ones become :class:`BadRequest`.

        Nothing a client sends can make this raise: any shape of bad input
        (binary frames, deep nesting, numbers too long to convert, wrong types
        in any field) is a ``BadRequest`` whose message is short, ASCII and
        never quotes more than a few characters of what was sent.
        """
        try:
            bk = _request_of(data)
        except ProtocolError as exc:
            return BadRequest(exc.message, "")
        kind = bk.get("type")
        if kind is None:
            return BadRequest("the message has no 'type'", "")
        if not isinstance(kind, str):
            return BadRequest(f"'type' must be a string, got {_json_type(kind)}", "")
        if kind.lower() not in _CANONICAL:
            return BadRequest(f"unknown message type {_preview(kind)}", "")
        kind = _CANONICAL[kind.lower()]
        if kind == AUDIO_CONN:
            if self.state is State.STREAMING:
                return BadRequest("a session is already open on this connection; send audioStop first", kind)
            return _conn_request(bk, kind)
        problem = self._session_problem(bk.get("sess_id"))
        if problem:
            return BadRequest(problem, kind)
        if kind == AUDIO_STOP:
            return StopRequest()
        return self._audio(bk, kind)

    def _session_problem(self, session_id: Any) -> str | None:
        if self.state is not State.STREAMING:
            return "no open session: send audioConn first"
        if session_id is None or session_id == "":
            return "sess_id is missing"
        if not isinstance(session_id, str):
            return f"sess_id must be a string, got {_json_type(session_id)}"
        if session_id != self.session_id:
            return "unknown sess_id: it does not belong to this connection"
        return None

    @staticmethod
    def _audio(bk: dict[str, Any], kind: str) -> Request:
        data = bk.get("data")
        if data is not None and not isinstance(data, dict):
            return BadRequest(f"data must be an object holding 'audio', got {_json_type(data)}", kind)
        encoded = data.get("audio") if data else None
        if encoded is None:
            return BadRequest("data.audio is missing: send base64 of raw 16-bit PCM", kind)
        if not isinstance(encoded, str):
            return BadRequest(f"data.audio must be a base64 string, got {_json_type(encoded)}", kind)
        if len(encoded) > MAX_CHUNK_BYTES * 4 // 3 + 4:
            return BadRequest(f"audio chunk is over {MAX_CHUNK_BYTES} bytes; send 3200-byte chunks", kind)
        try:
            audio = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return BadRequest("data.audio is not valid base64", kind)
        if len(audio) % 2:
            return BadRequest(f"audio has an odd number of bytes ({len(audio)}); send whole 16-bit samples", kind)
        return AudioRequest(audio)

    # Replies --------------------------------------------------------------------
    def accept(self) -> str:
        """Open a session and return the ``audioConn`` reply with its new id."""
        if self.state is State.CLOSED:
            self._to(State.IDLE)
        self._to(State.CONNECTING)
        self._to(State.STREAMING)
        self.session_id = self._new_session_id()
        return _encode({"service": "stt", "type": AUDIO_CONN, "status": 200, "message": "",
                        "data": {"sess_id": self.session_id}})

    def refuse(self, message: str) -> str:
        """Return a failed ``audioConn`` reply (no worker); the client may retry."""
        return self.error(AUDIO_CONN, message, BUSY_STATUS)

    @staticmethod
    def acknowledge() -> str:
        """The reply to an ``audioStream`` chunk that brought nothing new (status 200, no ``data``)."""
        return _encode({"service": "stt", "type": AUDIO_STREAM, "status": 200, "message": ""})

    @staticmethod
    def partial(text: str) -> str:
        return _encode({"service": "stt", "type": AUDIO_STREAM, "status": 200, "message": "",
                        "data": {"partial": text}})

    @staticmethod
    def final(text: str, start: float, end: float, language: str | None = None,
              words: Sequence[WordTiming] = ()) -> str:
        data: dict[str, Any] = {"final": text, "start": round(start, 3), "end": round(end, 3)}
        if language:  # extra keys: clients of the hosted service ignore what they do not know
            data["language"] = language
        if words:
            data["words"] = [{"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3),
                              "probability": None if w.probability is None else round(w.probability, 3)}
                             for w in words]
        return _encode({"service": "stt", "type": AUDIO_STREAM, "status": 200, "message": "", "data": data})

    def stopped(self) -> str:
        """Close the session and return the ``audioStop`` reply."""
        self._to(State.CLOSED)
        self.session_id = None
        return _encode({"service": "stt", "type": AUDIO_STOP, "status": 200, "message": ""})

    @staticmethod
    def error(stage: str, message: str, status: int = 400) -> str:
        """A failure reply; ``stage`` is empty when the request's type was unknown."""
        bk: dict[str, Any] = {"service": "stt", "type": stage, "status": status, "message": message}
        if not stage:
            del bk["type"]
        return _encode(bk)
