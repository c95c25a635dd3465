"""One streaming session: owns the websocket, pacing, timeouts, retries and resumption.

Theory of operation
-------------------
``Stream.__aenter__`` opens the websocket and performs ``audioConn`` (retrying
with exponential backoff and jitter while the server has no free worker).  A
reader task then feeds every reply to the sans-I/O
:class:`~bk_notebook.protocol.ClientProtocol` and dispatches its events: finals
go into the :class:`~bk_notebook.transcript.Transcript` at once, so a failure
later never loses them.  ``send`` re-chunks PCM to 3200 bytes and paces it at
``speed`` times real time.  Against a server that answers every chunk once it
has decoded it, a send window (:class:`SendWindow`) keeps at most ``window_seconds``
of audio unanswered, so the recogniser itself paces an unpaced client and the
backlog at ``audioStop`` is one window; websockets' flow control makes a send
wait (bounded by ``reply_timeout``) when the server reads slowly.  ``stop``
sends ``audioStop`` and keeps reading while replies keep coming, until its
reply or ``drain_timeout`` of silence; ``Transcript.complete`` says which.
Every wait has a bound, closing the socket included; an interrupt sends a
best-effort ``audioStop`` and closes within a second.  With ``Client(reconnect=N)``, a connection lost mid-stream
is replaced by a new session that is sent again the audio after the last
final (the resume buffer), so the joined transcript has no gap and no repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import numpy as np

from ..audio.pcm import Rechunker, chunk_pcm
from ..errors import (
    BkError,
    ConnectError,
    ConnectionLost,
    ProtocolError,
    ServiceError,
    StreamTimeout,
    UsageError,
    WorkerUnavailable,
)
from ..protocol import (
    BYTES_PER_SECOND,
    ClientProtocol,
    Connected,
    Event,
    Final,
    Partial,
    ServerError,
    State,
)
from ..transcript import Transcript
from .connect import MAX_REPLY_BYTES, backoff, open_websocket
from .events import EventBacklog
from .resume import ResumeBuffer
from .safeguards import call_back, call_back_sync, deadline
from .settings import ClientSettings
from .speed import parse_speed
from .window import SendWindow

__all__ = ["Stream"]

ABANDON_SECONDS = 1.0  # an interrupted or failed session's socket is closed within this
logger = logging.getLogger("bk_notebook.client.client")


class Stream:
    """One session; use through :meth:`Client.stream`."""

    def __init__(
        self,
        settings: ClientSettings,
        *,
        remember: Callable[[Transcript], Any] = lambda transcript: None,
        speed: float | None,
        on_partial: Callable[[str], Any] | None,
        on_final: Callable[[dict[str, Any]], Any] | None,
        on_progress: Callable[[float], Any] | None = None,
    ) -> None:
        self._settings = settings
        self._remember = remember  # the client's history: told of this session's transcript on entry
        self._speed = parse_speed(speed)  # a multiple of real time; None or "max": unpaced
        self._on_partial = on_partial
        self._on_final = on_final
        self._on_progress = on_progress
        self._protocol = ClientProtocol()
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._events = EventBacklog()  # unread by events(), bounded
        self._window = self._new_window()
        self._sender_wakeup = asyncio.Event()  # set by the reader when a chunk is answered or the stream fails
        self._last_heard = 0.0  # loop time of the last message from the server
        self._ended: str | None = None  # "closed", "failed" or "cancelled" once the stream is over
        self._failure: BkError | None = None
        self._chunker = Rechunker()  # a remainder shorter than a chunk waits for more audio or stop()
        self._sent = 0  # bytes of PCM sent (each byte once, whatever resumptions resent)
        self._t0 = 0.0
        self._offset = 0  # timeline position (bytes) where the current session's audio starts
        self._reconnects_left = settings.reconnect
        self._resume = (ResumeBuffer(int(settings.resume_buffer_seconds * BYTES_PER_SECOND))
                        if settings.reconnect else None)
        self.transcript = Transcript()

    @property
    def session_id(self) -> str | None:
        return self._protocol.session_id

    @property
    def seconds_sent(self) -> float:
        return self._sent / BYTES_PER_SECOND

    @property
    def state(self) -> str:
        """``connecting``, ``streaming``, ``stopping``, or how it ended: ``closed``, ``failed``, ``cancelled``."""
        if self._ended:
            return self._ended
        return "connecting" if self._protocol.state in (State.IDLE, State.CONNECTING) else self._protocol.state.value

    def __repr__(self) -> str:
        return (f"Stream(state={self.state!r}, session_id={self.session_id!r}, "
                f"seconds_sent={self.seconds_sent:.1f}, finals={len(self.transcript)})")

    def _new_window(self) -> SendWindow:
        seconds = self._settings.window_seconds
        # A proven per-chunk server is waited for as long as a reply may take (reply_timeout), not 5 s:
        # a recogniser that decodes a long utterance on a busy machine (Whisper) is slow, not silent,
        # and giving the window up then sent the rest of a long file unpaced into the server's queue bound.
        patience = max(SendWindow.PATIENCE, self._settings.reply_timeout)
        return SendWindow(None if seconds is None else max(1, round(seconds * 10)), patience=patience)

    def _check_usable(self, action: str) -> None:
        if self._ended is not None:
            failure = f" ({type(self._failure).__name__}: {self._failure})" if self._failure else ""
            raise UsageError(f"cannot {action}: this stream is {self._ended}{failure}; its finals are in "
                             ".transcript. Open a new session with client.stream()")

    # ------------------------------------------------------------------ opening
    async def __aenter__(self) -> Stream:
        if self._ended is not None or self._reader is not None:
            raise UsageError("a Stream opens once: use a new client.stream() for another session")
        try:
            await self._open()
        except BaseException as exc:  # an interrupt mid-handshake must not leak the socket
            await self._close(ABANDON_SECONDS)
            self._end("cancelled" if not isinstance(exc, Exception) else "failed")
            raise
        self._remember(self.transcript)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None and self._ended is None and self._protocol.state is State.STREAMING:
            await self.stop()
            return
        if isinstance(exc, BkError) and exc.transcript is None and self.session_id:
            exc.transcript = self.transcript
        interrupted = exc is not None and not isinstance(exc, Exception)  # CancelledError, KeyboardInterrupt
        try:
            await self._abandon()
        finally:
            if interrupted and self.session_id:
                logger.warning("transcription interrupted: %d finals kept in client.history (session %s, "
                               "%.1f s of audio sent, complete=False)",
                               len(self.transcript), self.session_id, self.seconds_sent)
            if self._ended is None:
                self._end("cancelled" if interrupted else "failed" if exc is not None else "closed")

    def _end(self, how: str) -> None:
        self._ended = how
        self._events.end()  # events() iterators end with the session
        self._sender_wakeup.set()
        if self._events.dropped:  # nobody read events(): say what its bound let go (finals are all kept)
            logger.info("session %s: %d unread events dropped from events() (its backlog is bounded; every final "
                        "is in .transcript)", self.session_id, self._events.dropped)

    async def _abandon(self) -> None:
        """Leave a session that did not stop normally: a best-effort audioStop, then close within a second."""
        ws = self._ws
        if ws is not None and self._protocol.state is State.STREAMING and ws.state is self._ws_open:
            try:
                async with deadline(ABANDON_SECONDS / 4):
                    await ws.send(self._protocol.stop())
            except Exception:  # noqa: BLE001 - best effort: the socket closes next whatever happened
                logger.debug("audioStop on leaving the session was not sent", exc_info=True)
        await self._close(ABANDON_SECONDS)

    async def _open(self, resuming: bool = False) -> None:
        from websockets.protocol import State as WebSocketState

        self._ws_open = WebSocketState.OPEN  # compared per chunk: bound once, websockets imported lazily
        settings = self._settings
        refusal: ServerError | None = None
        for attempt in range(1, settings.connect_retries + 1):
            if self._ws is None:
                # A local server restarting under a resumed session is worth its retries.
                self._ws = await open_websocket(settings, attempt, fail_fast_on_loopback=not resuming)
                if self._ws is None:
                    continue
            event = await self._request_session()
            if isinstance(event, Connected):
                self.transcript.session_id = event.session_id
                if not resuming:
                    self._t0 = asyncio.get_running_loop().time()
                self._window = self._new_window()  # a new session answers from its first chunk
                self._reader = asyncio.create_task(self._read())
                logger.debug("session %s open", event.session_id)
                return
            refusal = event
            logger.info("audioConn refused (%s), attempt %d of %d", event.message, attempt, settings.connect_retries)
            if attempt < settings.connect_retries:
                await asyncio.sleep(backoff(settings.retry_backoff, attempt))
        await self._close()
        raise WorkerUnavailable(
            f"the server refused audioConn {settings.connect_retries} times (worker not available); "
            "try again later or raise connect_retries",
            status=refusal.status if refusal else 400,
        )

    async def _request_session(self) -> Connected | ServerError:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._ws.send(self._protocol.connect())
            async with deadline(self._settings.reply_timeout):
                while True:
                    for event in self._protocol.receive(await self._ws.recv()):
                        if isinstance(event, (Connected, ServerError)):
                            return event
        except (TimeoutError, asyncio.TimeoutError):
            await self._close()
            raise StreamTimeout(f"no reply to audioConn within {self._settings.reply_timeout:g} s") from None
        except ConnectionClosed as exc:
            await self._close()
            raise ConnectError("the server closed the connection during audioConn "
                               f"({_describe_close(exc.rcvd)})") from None
        except ProtocolError:
            await self._close()
            raise

    # ------------------------------------------------------------------ reading
    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        protocol = self._protocol
        loop = asyncio.get_running_loop()
        try:
            async for message in self._ws:
                self._last_heard = loop.time()
                for event in protocol.receive(message):
                    await self._dispatch(event)
                if protocol.answered != self._window.answered:
                    self._window.on_answers(protocol.answered, protocol.acknowledged)
                    self._sender_wakeup.set()
                if protocol.state in (State.CLOSED, State.FAILED):
                    return
            self._fail(ConnectionLost(f"the server closed the connection before the audioStop reply "
                                      f"({_describe_close(self._ws.protocol.close_rcvd)})"))
        except ConnectionClosed as exc:
            sent = getattr(exc, "sent", None)
            if sent is not None and sent.code == 1009:
                self._fail(ProtocolError(f"the server sent a reply larger than {MAX_REPLY_BYTES} bytes"))
            else:
                self._fail(ConnectionLost(f"the connection was lost mid-stream ({_describe_close(exc.rcvd)})"))
        except ProtocolError as exc:
            self._fail(exc)
        finally:
            self._sender_wakeup.set()  # a sender waiting on the window learns of the failure at once
            if not self._resumable():  # a resumed session goes on feeding the same events() iterators
                self._events.end()

    async def _dispatch(self, event: Event) -> None:
        if isinstance(event, Final):
            offset = self._offset / BYTES_PER_SECOND
            start = None if event.start is None else round(event.start + offset, 3)
            end = None if event.end is None else round(event.end + offset, 3)
            record = self.transcript.add_final(event.text, start, end, sent=self.seconds_sent,
                                               language=event.language)
            if self._resume is not None:
                self._resume.final_ended_at(int(record["end"] * BYTES_PER_SECOND))
            await call_back(self._on_final, record)
        elif isinstance(event, Partial):
            await call_back(self._on_partial, event.text)
        elif isinstance(event, ServerError):
            self._fail(ServiceError(f"the server failed the session: {event.message}", status=event.status))
        if isinstance(event, (Partial, Final)):
            self._events.publish(event)

    def _fail(self, error: BkError) -> None:
        if self._failure is None:
            error.transcript = self.transcript
            self._failure = error
            self._protocol.fail()

    async def events(self) -> AsyncIterator[Partial | Final]:
        """Partial and final events as they arrive, until the session ends.

        Events wait for a reader in one queue shared by every iterator, bounded
        at 1000 unread events: past that the oldest partials are dropped (every
        final stays in ``.transcript``).  Raises the session's error (carrying
        ``.transcript``) if it failed.
        """
        async for event in self._events.read():
            yield event
        if self._failure:
            raise self._failure

    # ------------------------------------------------------------------ sending
    async def send(self, pcm: np.ndarray | bytes) -> None:
        """Send 16 kHz mono int16 PCM (array or raw bytes) of any length.

        It is re-chunked to 3200-byte ``audioStream`` messages; a remainder waits
        for the next call or for :meth:`stop`.
        """
        self._check_usable("send audio")
        for chunk in self._chunker.views(pcm, "send"):
            await self._send_chunk(chunk)

    async def _send_chunk(self, chunk: bytes | memoryview) -> None:
        if self._speed is not None:
            due = self._t0 + self._sent / BYTES_PER_SECOND / self._speed
            delay = due - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
        if not self._window.may_send():
            await self._wait_for_room()
        if self._failure:  # the reader may have failed while we waited
            await self._recover_or_raise()
        if self._protocol.state is not State.STREAMING:
            raise UsageError(f"cannot send audio: the session is {self._protocol.state.value}")
        try:
            await self._send(self._protocol.audio(chunk), "audioStream")
        except ConnectionLost:
            await self._recover_or_raise()  # resends what the new session needs, this chunk excluded
            await self._send(self._protocol.audio(chunk), "audioStream")
        self._window.on_sent()
        if self._resume is not None:
            self._resume.sent(chunk)
        self._sent += len(chunk)
        self.transcript.duration = self._sent / BYTES_PER_SECOND
        if self._on_progress is not None and self._sent % BYTES_PER_SECOND < len(chunk):
            call_back_sync(self._on_progress, self.transcript.duration)

    async def _wait_for_room(self) -> None:
        """Wait until the server has answered enough chunks, or give the window up on a stall."""
        window = self._window
        while not window.may_resume() and self._failure is None:
            self._sender_wakeup.clear()
            patience = window.wait_limit
            try:
                async with deadline(patience):
                    await self._sender_wakeup.wait()
            except (TimeoutError, asyncio.TimeoutError):
                window.on_stall()
                logger.info("no answer to %d chunks in flight for %.2g s: pacing by speed alone from now on",
                            window.in_flight, patience)

    async def _send(self, text: str, what: str) -> None:
        if self._ws.state is not self._ws_open:  # the server's close frame arrived: sending would wait for nothing
            if self._reader is not None:
                await asyncio.wait([self._reader], timeout=1.0)  # its reason is the better one
            self._fail(ConnectionLost(f"the server closed the connection before {what} "
                                      f"({_describe_close(self._ws.protocol.close_rcvd)})"))
            raise self._failure  # type: ignore[misc]
        try:
            if self._fits_write_buffer(text):
                await self._ws.send(text)  # below the high-water mark send() cannot wait: no timer needed
            else:
                async with deadline(self._settings.reply_timeout):
                    await self._ws.send(text)
        except (TimeoutError, asyncio.TimeoutError):
            self._fail(StreamTimeout(f"the server did not accept {what} within {self._settings.reply_timeout:g} s"))
        except Exception as exc:
            from websockets.exceptions import ConnectionClosed  # here, not per chunk: imports cost on a hot path

            if not isinstance(exc, ConnectionClosed):
                raise
            if self._reader is not None:
                await asyncio.wait([self._reader], timeout=1.0)  # its reason is the better one
            self._fail(ConnectionLost(f"the connection was lost while sending {what} "
                                      f"({_describe_close(exc.rcvd)})"))
        if self._failure:
            raise self._failure

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
            self._events.end()  # no session follows: events() ends with this error
            raise
        assert self._resume is not None  # _resumable() checked it
        start, audio, gap = self._resume.resume()
        if gap is not None:
            self.transcript.gaps.append((gap[0] / BYTES_PER_SECOND, gap[1] / BYTES_PER_SECOND))
            logger.warning("audio from %.1f s to %.1f s was dropped (over the resume buffer)",
                           gap[0] / BYTES_PER_SECOND, gap[1] / BYTES_PER_SECOND)
        self._offset = start
        for chunk in chunk_pcm(audio):
            if not self._window.may_send():
                await self._wait_for_room()
            await self._send(self._protocol.audio(chunk), "audioStream")
            self._window.on_sent()

    # ----------------------------------------------------------------- stopping
    async def stop(self) -> Transcript:
        """Send ``audioStop``, read until its reply, return the Transcript.

        Finals that arrive after ``audioStop`` belong to the result; reading goes
        on as long as replies keep coming (``drain_timeout`` is the longest
        silence tolerated, not a total).  If the reply never comes, the finals
        received are returned with ``complete=False`` and a warning is logged.
        """
        self._check_usable("stop")
        try:
            if self._protocol.state is State.STREAMING:
                try:
                    rest = self._chunker.flush()
                    if rest:
                        await self._send_chunk(rest)
                    while not await self._drain():
                        await self._recover_or_raise()  # lost while draining: resume, then stop again
                finally:
                    await self._close()
            transcript = self.transcript
            transcript.complete = (self._failure is None and self._protocol.state is State.CLOSED
                                   and not transcript.gaps)
            if self._failure:
                raise self._failure
            return transcript
        except BaseException as exc:
            await self._close(ABANDON_SECONDS)
            if not isinstance(exc, Exception):
                self._end("cancelled")
            raise
        finally:
            if self._ended is None:
                self._end("failed" if self._failure else "closed")

    async def _drain(self) -> bool:
        """Send audioStop and read until its reply; False when the connection was lost meanwhile."""
        try:
            await self._send(self._protocol.stop(), "audioStop")
        except ConnectionLost:
            return False
        assert self._reader is not None
        loop = asyncio.get_running_loop()
        self._last_heard = loop.time()
        done: set[Any] = set()
        while not done:  # as long as the server keeps talking, it is still working for us
            silence = self._settings.drain_timeout - (loop.time() - self._last_heard)
            if silence <= 0:
                break
            done, _ = await asyncio.wait([self._reader], timeout=silence)
        if not done and self._ws.state is not self._ws_open:
            self._fail(ConnectionLost(f"the server closed the connection before the audioStop reply "
                                      f"({_describe_close(self._ws.protocol.close_rcvd)})"))
        elif not done:
            logger.warning("no audioStop reply (the server was silent for %.1f s); returning the %d finals "
                           "received, marked incomplete", self._settings.drain_timeout, len(self.transcript))
        return not isinstance(self._failure, ConnectionLost)

    async def _close(self, timeout: float = 2.0) -> None:
        """Close the socket; a server that does not take the close frame within ``timeout`` is cut off."""
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._ws is not None:
            ws, self._ws = self._ws, None
            try:
                async with deadline(timeout):
                    await ws.close()  # can wait on a full write buffer, with no timeout of its own
            except (TimeoutError, asyncio.TimeoutError):
                logger.debug("the server did not take the close frame within %.1f s", timeout)
            finally:
                if ws.transport is not None and not ws.transport.is_closing():
                    ws.transport.abort()


def _describe_close(frame: Any) -> str:
    """The server's close frame as an error message says it (``code 1011: reason``); None: there was none."""
    if frame is None:
        return "no close frame"
    return f"code {frame.code}" + (f": {frame.reason}" if frame.reason else "")
