"""One streaming session: owns the websocket, pacing, timeouts, retries and resumption.

Theory of operation
-------------------
``Stream.__aenter__`` opens the websocket and performs ``audioConn`` (retrying
with exponential backoff and jitter while the server has no free worker).  A
reader task then feeds every reply to the sans-I/O
:class:`~bk_notebook.protocol.ClientProtocol` and dispatches its events: finals
go into the :class:`~bk_notebook.transcript.Transcript` at once, so a failure
later never loses them.  ``send`` re-chunks PCM to 3200 bytes and paces it at
``speed`` times real time; websockets' flow control makes it wait (bounded by
``reply_timeout``) when the server reads slowly, so memory stays flat.
``stop`` sends ``audioStop`` and keeps reading until its reply, or until
``drain_timeout``.  With ``Client(reconnect=N)``, a connection lost mid-stream
is replaced by a new session that is sent again the audio after the last
final (see ``resume.py``), so the joined transcript has no gap and no repeat.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import CHUNK_BYTES, SAMPLE_RATE, pcm_bytes
from .errors import (
    BkError,
    ConnectError,
    ConnectionLost,
    ProtocolError,
    ServiceError,
    StreamTimeout,
    UsageError,
    WorkerUnavailable,
)
from .handshake import MAX_REPLY_BYTES, backoff, open_websocket
from .protocol import ClientProtocol, Connected, Event, Final, Partial, ServerError, State, Stopped
from .resume import ResumeBuffer
from .transcript import Transcript

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Stream"]

BYTES_PER_SECOND = SAMPLE_RATE * 2
logger = logging.getLogger("bk_notebook.client")


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UsageError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)

if sys.version_info >= (3, 11):
    _deadline = asyncio.timeout
else:  # pragma: no cover - Python 3.10
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def _deadline(delay: float | None) -> AsyncIterator[None]:
        task = asyncio.current_task()
        assert task is not None
        handle = asyncio.get_running_loop().call_later(delay, task.cancel) if delay else None
        try:
            yield
        except asyncio.CancelledError as exc:
            raise TimeoutError from exc
        finally:
            if handle:
                handle.cancel()



class Stream:
    """One session; use through :meth:`Client.stream`."""

    def __init__(
        self,
        client: Client,
        *,
        speed: float | None,
        on_partial: Callable[[str], Any] | None,
        on_final: Callable[[dict[str, Any]], Any] | None,
        on_progress: Callable[[float], Any] | None = None,
    ) -> None:
        if speed is not None:
            _positive("speed", speed)
        self._client = client
        self._speed = speed
        self._on_partial = on_partial
        self._on_final = on_final
        self._on_progress = on_progress
        self._protocol = ClientProtocol()
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._failure: BkError | None = None
        self._carry = b""
        self._sent = 0  # bytes of PCM sent (each byte once, whatever resumptions resent)
        self._t0 = 0.0
        self._offset = 0  # timeline position (bytes) where the current session's audio starts
        self._reconnects_left = client.reconnect
        self._resume = ResumeBuffer(int(client.resume_buffer_seconds * BYTES_PER_SECOND)) if client.reconnect else None
        self.transcript = Transcript()

    @property
    def session_id(self) -> str | None:
        return self._protocol.session_id

    @property
    def seconds_sent(self) -> float:
        return self._sent / BYTES_PER_SECOND

    # ------------------------------------------------------------------ opening
    async def __aenter__(self) -> Stream:
        await self._open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None and self._protocol.state is State.STREAMING:
            await self.stop()
            return
        if isinstance(exc, BkError) and exc.transcript is None and self.session_id:
            exc.transcript = self.transcript
        await self._close()
        self._events.put_nowait(None)  # events() iterators end with the session

    async def _open(self, resuming: bool = False) -> None:
        from websockets.protocol import State as WebSocketState

        self._ws_open = WebSocketState.OPEN  # compared per chunk: bound once, websockets imported lazily
        client = self._client
        refusal: ServerError | None = None
        for attempt in range(1, client.connect_retries + 1):
            if self._ws is None:
                self._ws = await open_websocket(client, attempt)
                if self._ws is None:
                    continue
            event = await self._request_session()
            if isinstance(event, Connected):
                self.transcript.session_id = event.session_id
                if not resuming:
                    self._t0 = asyncio.get_running_loop().time()
                self._reader = asyncio.create_task(self._read())
                logger.debug("session %s open", event.session_id)
                return
            refusal = event
            logger.info("audioConn refused (%s), attempt %d of %d", event.message, attempt, client.connect_retries)
            if attempt < client.connect_retries:
                await asyncio.sleep(backoff(client.retry_backoff, attempt))
        await self._close()
        raise WorkerUnavailable(
            f"the server refused audioConn {client.connect_retries} times (worker not available); "
            "try again later or raise connect_retries",
            status=refusal.status if refusal else 400,
        )

    async def _request_session(self) -> Connected | ServerError:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._ws.send(self._protocol.connect())
            async with _deadline(self._client.reply_timeout):
                while True:
                    for event in self._protocol.receive(await self._ws.recv()):
                        if isinstance(event, (Connected, ServerError)):
                            return event
        except (TimeoutError, asyncio.TimeoutError):
            await self._close()
            raise StreamTimeout(f"no reply to audioConn within {self._client.reply_timeout:g} s") from None
        except ConnectionClosed as exc:
            await self._close()
            raise ConnectError(f"the server closed the connection during audioConn ({_close_reason(exc)})") from None
        except ProtocolError:
            await self._close()
            raise

    # ------------------------------------------------------------------ reading
    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in self._ws:
                for event in self._protocol.receive(message):
                    await self._dispatch(event)
                if self._protocol.state in (State.CLOSED, State.FAILED):
                    return
            self._fail(ConnectionLost("the server closed the connection before the audioStop reply"))
        except ConnectionClosed as exc:
            sent = getattr(exc, "sent", None)
            if sent is not None and sent.code == 1009:
                self._fail(ProtocolError(f"the server sent a reply larger than {MAX_REPLY_BYTES} bytes"))
            else:
                self._fail(ConnectionLost(f"the connection was lost mid-stream ({_close_reason(exc)})"))
        except ProtocolError as exc:
            self._fail(exc)
        finally:
            if not self._resumable():  # a resumed session goes on feeding the same events() iterators
                self._events.put_nowait(None)

    async def _dispatch(self, event: Event) -> None:
        if isinstance(event, Final):
            offset = self._offset / BYTES_PER_SECOND
            start = None if event.start is None else round(event.start + offset, 3)
            end = None if event.end is None else round(event.end + offset, 3)
            record = self.transcript.add_final(event.text, start, end, sent=self.seconds_sent)
            if self._resume is not None:
                self._resume.final_ended_at(int(record["end"] * BYTES_PER_SECOND))
            await _call(self._on_final, record)
        elif isinstance(event, Partial):
            await _call(self._on_partial, event.text)
        elif isinstance(event, ServerError):
            self._fail(ServiceError(f"the server failed the session: {event.message}", status=event.status))
        if not isinstance(event, (ServerError, Stopped)):
            self._events.put_nowait(event)

    def _fail(self, error: BkError) -> None:
        if self._failure is None:
            error.transcript = self.transcript
            self._failure = error
            self._protocol.fail()

    async def events(self) -> AsyncIterator[Partial | Final]:
        """Partial and final events as they arrive, until the session ends.

        Raises the session's error (carrying ``.transcript``) if it failed.
        """
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)  # later iterators end too
                if self._failure:
                    raise self._failure
                return
            yield event  # type: ignore[misc]

    # ------------------------------------------------------------------ sending
    async def send(self, pcm: np.ndarray | bytes) -> None:
        """Send 16 kHz mono int16 PCM (array or raw bytes) of any length.

        It is re-chunked to 3200-byte ``audioStream`` messages; a remainder waits
        for the next call or for :meth:`stop`.
        """
        data = pcm_bytes(pcm, "send")
        if self._carry:
            head = CHUNK_BYTES - len(self._carry)
            self._carry += bytes(data[:head])
            data = data[head:]
            if len(self._carry) < CHUNK_BYTES:
                return
            await self._send_chunk(self._carry)
            self._carry = b""
        whole = len(data) - len(data) % CHUNK_BYTES
        for offset in range(0, whole, CHUNK_BYTES):
            await self._send_chunk(data[offset : offset + CHUNK_BYTES])
        self._carry = bytes(data[whole:])

    async def _send_chunk(self, chunk: bytes | memoryview) -> None:
        if self._speed is not None:
            due = self._t0 + self._sent / BYTES_PER_SECOND / self._speed
            delay = due - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
        if self._failure:  # the reader may have failed while we waited
            await self._recover_or_raise()
        if self._protocol.state is not State.STREAMING:
            raise UsageError(f"cannot send audio: the session is {self._protocol.state.value}")
        try:
            await self._send(self._protocol.audio(chunk), "audioStream")
        except ConnectionLost:
            await self._recover_or_raise()  # resends what the new session needs, this chunk excluded
            await self._send(self._protocol.audio(chunk), "audioStream")
        if self._resume is not None:
            self._resume.sent(chunk)
        self._sent += len(chunk)
        self.transcript.duration = self._sent / BYTES_PER_SECOND
        if self._on_progress is not None and self._sent % BYTES_PER_SECOND < len(chunk):
            _call_sync(self._on_progress, self.transcript.duration)

    async def _send(self, text: str, what: str) -> None:
        if self._ws.state is not self._ws_open:  # the server's close frame arrived: sending would wait for nothing
            self._fail(ConnectionLost(f"the server closed the connection before {what} ({self._close_frame()})"))
            raise self._failure  # type: ignore[misc]
        try:
            if self._fits_write_buffer(text):
                await self._ws.send(text)  # below the high-water mark send() cannot wait: no timer needed
            else:
                async with _deadline(self._client.reply_timeout):
                    await self._ws.send(text)
        except (TimeoutError, asyncio.TimeoutError):
            self._fail(StreamTimeout(f"the server did not accept {what} within {self._client.reply_timeout:g} s"))
        except Exception as exc:
            from websockets.exceptions import ConnectionClosed  # here, not per chunk: imports cost on a hot path

            if not isinstance(exc, ConnectionClosed):
                raise
            if self._reader is not None:
                await asyncio.wait([self._reader], timeout=1.0)  # its reason is the better one
            self._fail(ConnectionLost(f"the connection was lost while sending {what} ({_close_reason(exc)})"))
        if self._failure:
            raise self._failure

    def _close_frame(self) -> str:
        frame = getattr(self._ws.protocol, "close_rcvd", None)
        if frame is None:
            return "no close frame"
        return f"code {frame.code}" + (f": {frame.reason}" if frame.reason else "")

    def _fits_write_buffer(self, text: str) -> bool:
        """Whether sending ``text`` keeps the write buffer under websockets' flow-control limit.

        A timer per chunk was about a sixth of the client's profiled time; only a
        send that may wait for the server to read needs one.
        """
        ws = self._ws
        return not ws.paused and ws.transport.get_write_buffer_size() + len(text) + 16 <= ws.write_limit_high

    # --------------------------------------------------------------- resuming
    def _resumable(self) -> bool:
        return isinstance(self._failure, ConnectionLost) and self._resume is not None and self._reconnects_left > 0

    async def _recover_or_raise(self) -> None:
        """Replace a lost connection by a new session, or raise the failure."""
        failure = self._failure
        assert failure is not None
        if not self._resumable():
            raise failure
        self._reconnects_left -= 1
        logger.warning("%s; resuming in a new session (%d reconnects left)", failure, self._reconnects_left)
        await self._close()
        self._failure = None
        self._protocol = ClientProtocol()
        try:
            await self._open(resuming=True)
        except BkError as exc:
            exc.transcript = self.transcript
            self._failure = exc
            self._events.put_nowait(None)  # no session follows: events() ends with this error
            raise
        assert self._resume is not None  # _resumable() checked it
        start, audio, gap = self._resume.resume()
        if gap is not None:
            self.transcript.gaps.append((gap[0] / BYTES_PER_SECOND, gap[1] / BYTES_PER_SECOND))
            logger.warning("audio from %.1f s to %.1f s was dropped (over the resume buffer)",
                           gap[0] / BYTES_PER_SECOND, gap[1] / BYTES_PER_SECOND)
        self._offset = start
        for at in range(0, len(audio), CHUNK_BYTES):
            await self._send(self._protocol.audio(audio[at : at + CHUNK_BYTES]), "audioStream")

    # ----------------------------------------------------------------- stopping
    async def stop(self) -> Transcript:
        """Send ``audioStop``, read until its reply (or ``drain_timeout``), return the Transcript.

        Finals that arrive after ``audioStop`` belong to the result.  If the reply
        never comes, the transcript received so far is returned and a warning logged.
        """
        if self._protocol.state is State.STREAMING:
            try:
                if self._carry:
                    await self._send_chunk(self._carry)
                    self._carry = b""
                while not await self._drain():
                    await self._recover_or_raise()  # lost while draining: resume, then stop again
            finally:
                await self._close()
        if self._failure:
            raise self._failure
        return self.transcript

    async def _drain(self) -> bool:
        """Send audioStop and read until its reply; False when the connection was lost meanwhile."""
        try:
            await self._send(self._protocol.stop(), "audioStop")
        except ConnectionLost:
            return False
        assert self._reader is not None
        done, _ = await asyncio.wait([self._reader], timeout=self._client.drain_timeout)
        if not done and self._ws.state is not self._ws_open:
            self._fail(ConnectionLost(f"the server closed the connection before the audioStop reply "
                                      f"({self._close_frame()})"))
        elif not done:
            logger.warning("no audioStop reply within %.1f s; returning the %d finals received",
                           self._client.drain_timeout, len(self.transcript))
        return not isinstance(self._failure, ConnectionLost)

    async def _close(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._ws is not None:
            ws, self._ws = self._ws, None
            await ws.close()


def _close_reason(exc: Any) -> str:
    frame = getattr(exc, "rcvd", None)
    if frame is None:
        return "no close frame"
    return f"code {frame.code}" + (f": {frame.reason}" if frame.reason else "")


async def _call(callback: Callable[..., Any] | None, arg: Any) -> None:
    if callback is None:
        return
    try:
        result = callback(arg)
        if inspect.isawaitable(result):
            await result
    except Exception:  # a user's callback must not lose the session's finals
        logger.exception("callback %r raised; the session goes on", callback)


def _call_sync(callback: Callable[[Any], Any], arg: Any) -> None:
    try:
        callback(arg)
    except Exception:  # a display or progress callback must not end the session
        logger.exception("callback %r raised; the session goes on", callback)


