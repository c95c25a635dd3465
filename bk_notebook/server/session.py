"""One connection of the local server: a reader that keeps reading, a decoder that answers.

Theory of operation
-------------------
Each websocket connection runs two tasks joined by an :class:`Inbox`:

* the **reader** only receives messages and puts them in the inbox, so the
  socket keeps being read (keepalive pings are answered, a close is seen)
  while the engine lags behind.  The inbox is bounded by the size of the
  queued messages (``max_queued_seconds`` of audio); a chunk that finds it
  full is refused with a 400 reply, in its place in the order.  The reader
  never stops reading to slow a client down: a client's kernel buffers
  megabytes of audio, and a keepalive ping queued behind them would wait
  longer than its timeout for a slow engine to decode them, so TCP
  backpressure would end in a dropped connection;
* the **decoder** takes messages in order, parses them with the
  :class:`~bk_notebook.protocol.ServerProtocol`, runs the engine in a worker
  thread and is the only task that sends, so replies keep request order.

Every ``audioStream`` request gets exactly one reply, sent once its chunk is
decoded (:class:`ChunkAnswers`): the chunk's final, else the newest partial if
its text changed, else an empty acknowledgement.  Clients use these answers
for flow control (how much audio is sent but not yet decoded).  The session's
worker is held by a :class:`~bk_notebook.server.pool.Lease` that the
connection releases in one ``finally``, whatever ended it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..protocol import (
    AUDIO_CONN,
    AUDIO_STREAM,
    SAMPLE_RATE,
    AudioRequest,
    BadRequest,
    ConnRequest,
    Final,
    Partial,
    ServerProtocol,
    StopRequest,
)
from .pool import EnginePool, Lease
from .turns import DecodeTurns, Load

__all__ = ["ChunkAnswers", "Connection", "ConnectionSettings", "Inbox", "Refused"]

logger = logging.getLogger("bk_notebook.server")

# What a queued message costs in the inbox beyond its length: tiny messages are not free.
MESSAGE_OVERHEAD = 256
JSON_AROUND_AUDIO = 130  # an audioStream message's text around its base64 audio


class ChunkAnswers:
    """Exactly one reply per ``audioStream`` chunk, in order (sans-I/O).

    A chunk's reply carries, by priority: a final (the oldest one not yet sent:
    when one chunk ends two utterances, the second final rides on the next
    chunk's reply), else the newest partial of the utterance under way if its
    text differs from the last one sent, else an acknowledgement.  Partials
    that a final overtook are dropped.  :meth:`stop` returns the finals still
    held plus those of the engine's flush, one message each.
    """

    def __init__(self) -> None:
        self.samples = 0  # audio decoded so far, for engines that do not time their finals
        self.finals = 0
        self._last_end = 0.0
        self._held: deque[str] = deque()
        self._partial: str | None = None  # newest partial of the utterance under way
        self._shown: str | None = None  # the partial last sent

    def chunk(self, samples: int, events: Sequence[Partial | Final]) -> str:
        """The one reply to a chunk of ``samples`` samples whose decoding gave ``events``."""
        self.samples += samples
        self._take(events)
        if self._held:
            return self._held.popleft()
        if self._partial is not None and self._partial != self._shown:
            self._shown = self._partial
            return ServerProtocol.partial(self._partial)
        return ServerProtocol.acknowledge()

    def stop(self, events: Sequence[Partial | Final]) -> list[str]:
        """The finals to send before the ``audioStop`` reply."""
        self._take(events)
        held, self._held = list(self._held), deque()
        self._partial = self._shown = None
        return held

    def _take(self, events: Sequence[Partial | Final]) -> None:
        for event in events:
            if isinstance(event, Final):
                # An engine that does not know its times gets them estimated from the audio.
                end = event.end if event.end is not None else self.samples / SAMPLE_RATE
                start = event.start if event.start is not None else min(self._last_end, end)
                self.finals += 1
                self._last_end = end
                self._held.append(ServerProtocol.final(event.text, start, end, event.language, event.words))
                self._partial = self._shown = None
            else:
                self._partial = event.text


class Inbox:
    """Messages read but not yet handled, bounded by their total size (one reader, one decoder).

    The reader never waits on it: a message that would take it over ``limit``
    is refused (its 400 reply, queued as a marker, keeps its place in the
    order), so the socket is always read and keepalive pings always answered.
    Small messages (``audioStop``, ``audioConn``) get ``SMALL_ALLOWANCE`` of
    room beyond the limit: a client whose audio was refused can still stop.
    """

    SMALL = 1024  # a message this short carries no audio worth counting: a request without audio
    SMALL_ALLOWANCE = 1024 * 1024

    def __init__(self, limit: int) -> None:
        self._items: deque[Any] = deque()
        self._sizes: deque[int] = deque()
        self.size = 0
        self.limit = limit
        self._not_empty = asyncio.Event()

    def offer(self, item: Any, size: int) -> bool:
        """Queue ``item`` if there is room for ``size`` more; False if it was refused."""
        room = self.limit + (self.SMALL_ALLOWANCE if size <= self.SMALL + MESSAGE_OVERHEAD else 0)
        if self.size + size > room:
            last = self._items[-1] if self._items else None
            if isinstance(last, Refused):
                last.count += 1  # refusals in a row cost one marker, however many
            else:
                self._push(Refused(), 0)
            return False
        self._push(item, size)
        return True

    def put_last(self, item: Any) -> None:
        """Queue a marker that ends the stream of messages."""
        self._push(item, 0)

    def _push(self, item: Any, size: int) -> None:
        self._items.append(item)
        self._sizes.append(size)
        self.size += size
        self._not_empty.set()

    async def get(self) -> Any:
        while not self._items:
            self._not_empty.clear()
            await self._not_empty.wait()
        self.size -= self._sizes.popleft()
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


class Refused:
    """Inbox marker: ``count`` messages in a row found the inbox full; each gets a 400."""

    def __init__(self) -> None:
        self.count = 1


@dataclass(frozen=True)
class ConnectionSettings:
    """What a connection needs of the server's configuration."""

    idle_timeout: float
    max_queued_seconds: float
    #: A session that holds a worker and has sent no audio yet is closed after this long (when shorter
    #: than ``idle_timeout``): it keeps a worker from the sessions that would use it.
    no_audio_timeout: float = 10.0

    def idle_timeout_now(self, *, heard: bool, in_session: bool) -> float:
        """The idle limit that applies: shorter for an open session that has sent no audio at all."""
        if in_session and not heard:
            return min(self.idle_timeout, self.no_audio_timeout)
        return self.idle_timeout

    @property
    def inbox_limit(self) -> int:
        """``max_queued_seconds`` of 16 kHz int16 audio sent as the protocol's 100 ms messages."""
        per_second = SAMPLE_RATE * 2 * 4 / 3 + 10 * (MESSAGE_OVERHEAD + JSON_AROUND_AUDIO)
        return int(self.max_queued_seconds * per_second)


def audio_seconds(message_length: int) -> float:
    """Seconds of 16 kHz int16 audio in an ``audioStream`` message of this length (base64 in JSON)."""
    return max(0, message_length - JSON_AROUND_AUDIO) * 3 / 4 / 2 / SAMPLE_RATE


class _EngineFailed(Exception):
    """The engine raised: the client was told (status 500) and the connection is closing."""


class _Closed:
    """Inbox marker: the client closed the connection."""


class _Idle:
    """Inbox marker: nothing arrived for ``idle_timeout`` and nothing was left to do."""


class Connection:  # pragma: no mutate block (the I/O half: mutation-tested apart with the server tests, TESTING.md)
    """One websocket connection; :meth:`run` returns when it is over, its worker released.

    ``turns`` and ``load`` are the server's (shared by every connection): engine calls take
    turns, and ``audioConn`` is refused when ``load`` says the live sessions would fall behind.
    """

    def __init__(self, ws: Any, pool: EnginePool, settings: ConnectionSettings,
                 turns: DecodeTurns | None = None, load: Load | None = None) -> None:
        self._ws = ws
        self._pool = pool
        self._settings = settings
        self._turns = turns or DecodeTurns(1 << 16)  # none given: no limit beyond the pool's
        self._load = load
        self._refused_chunks = 0
        self._protocol = ServerProtocol()
        self._inbox = Inbox(settings.inbox_limit)
        self._lease: Lease | None = None
        self._answers = ChunkAnswers()
        self._session_id = ""
        self._working = False  # the decoder is handling a message
        self._last_activity = 0.0  # loop time of the last message received or answered
        self._gone = False  # the client closed: nothing more can be sent

    async def run(self) -> None:
        from websockets.exceptions import ConnectionClosed

        self._last_activity = asyncio.get_running_loop().time()
        reader = asyncio.create_task(self._read_all())
        decoder = asyncio.create_task(self._decode_all())
        try:
            await asyncio.wait({reader, decoder}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and reader.exception() is not None:
                self._gone = True
                self._inbox.put_last(_Closed())  # the reader failed: the decoder ends as for a close
            if not decoder.done():
                await asyncio.wait({decoder})  # what was read before the close, handled without the engine
            for task in (reader, decoder):  # a decoder that ended first ends the connection: returning closes it
                error = None if task.cancelled() or not task.done() else task.exception()
                if error is not None and not isinstance(error, ConnectionClosed):
                    logger.error("connection failed", exc_info=error)
        finally:
            reader.cancel()
            decoder.cancel()
            self._release()  # the one place a session's worker goes back, however the connection ended

    # ------------------------------------------------------------------ reader
    def _idle_left(self) -> float:
        """Seconds until the connection counts as idle: nothing received or answered meanwhile."""
        limit = self._settings.idle_timeout_now(heard=self._answers.samples > 0, in_session=self._lease is not None)
        return limit - (asyncio.get_running_loop().time() - self._last_activity)

    async def _read_all(self) -> None:
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                # At most no_audio_timeout at a time: a session opened meanwhile has that shorter limit.
                wait = min(self._idle_left(), self._settings.no_audio_timeout)
                message = await asyncio.wait_for(self._ws.recv(), max(0.01, wait))
            except asyncio.TimeoutError:
                if len(self._inbox) or self._working or self._idle_left() > 0:
                    continue  # the client waits for replies to what it sent: that is not idleness
                self._inbox.put_last(_Idle())
                return
            except ConnectionClosed:
                self._gone = True
                self._inbox.put_last(_Closed())
                return
            self._last_activity = asyncio.get_running_loop().time()
            if self._load is not None and len(message) > Inbox.SMALL:  # audio: how fast this session sends it
                self._load.arrived(self, audio_seconds(len(message)), self._last_activity)
            self._inbox.offer(message, len(message) + MESSAGE_OVERHEAD)

    # ----------------------------------------------------------------- decoder
    async def _decode_all(self) -> None:
        from websockets.exceptions import ConnectionClosed

        while True:
            item = await self._inbox.get()
            if isinstance(item, _Closed):
                self._end_session("connection closed before audioStop")
                return
            if isinstance(item, _Idle):
                await self._close_idle()
                return
            self._working = True
            try:
                await self._handle(item)
            except ConnectionClosed:
                continue  # the client left: what it sent before is handled without the engine
            except _EngineFailed:
                return
            finally:
                self._working = False
                self._last_activity = asyncio.get_running_loop().time()

    async def _handle(self, message: str | bytes | Refused) -> None:
        if isinstance(message, Refused):
            seconds = self._settings.max_queued_seconds
            if not self._refused_chunks:  # once per session; the count is in its last line
                logger.warning("session %s: refusing audio: over %g s is waiting to be decoded (the client sends "
                               "faster than the engine decodes and does not wait for the replies)",
                               self._session_id, seconds)
            self._refused_chunks += message.count
            text = self._protocol.error(
                AUDIO_STREAM,
                f"refused: over {seconds:g} s of audio is waiting to be decoded; wait for the replies "
                "(one per audioStream) before sending more",
            )
            for _ in range(message.count):
                await self._send(text)
            return
        request = self._protocol.receive(message)
        if isinstance(request, AudioRequest):
            await self._chunk(request.audio)
        elif isinstance(request, StopRequest):
            await self._stop()
        elif isinstance(request, ConnRequest):
            await self._open(request.prompt)
        elif isinstance(request, BadRequest):
            await self._send(self._protocol.error(request.stage, request.message))

    async def _open(self, prompt: str | None = None) -> None:
        now = asyncio.get_running_loop().time()
        if self._load is not None and not self._load.admits(now):
            logger.info("refused a session: the live sessions need %.2f of %d decoding slots; one more would "
                        "fall behind real time", self._load.live_demand(now), self._load.slots)
            await self._send(self._protocol.refuse("worker not available"))
            return
        lease = self._pool.try_lease()
        if lease is None:
            await self._send(self._protocol.refuse("worker not available"))
            return
        self._lease = lease  # from here on, the connection's finally gives it back
        try:
            await lease.start()
            if prompt is not None and not await lease.set_prompt(prompt):
                logger.warning("a session's prompt was ignored: this server's engine takes none (whisper does)")
        except Exception as exc:  # noqa: BLE001 - reported to the client, logged here
            logger.exception("engine failed to start")
            self._release()
            # 500, not the busy 400 that clients retry: the same engine would fail the same way again.
            await self._send(ServerProtocol.error(AUDIO_CONN, f"the engine failed to start: {_reason(exc)}", 500))
            return
        self._answers = ChunkAnswers()
        if self._load is not None:
            self._load.opened(self, asyncio.get_running_loop().time())
        await self._send(self._protocol.accept())
        self._session_id = self._protocol.session_id or ""

    async def _chunk(self, audio: bytes) -> None:
        if self._gone:  # nobody will read the reply: do not spend the engine on it
            self._answers.samples += len(audio) // 2
            return
        events = await self._engine("feed", audio) or []
        await self._send(self._answers.chunk(len(audio) // 2, events))

    async def _stop(self) -> None:
        from websockets.exceptions import ConnectionClosed

        if self._gone:
            self._end_session("client sent audioStop and closed before the reply")
            return
        try:
            # An engine that can end its stream in steps (Whisper: a file's last packs) has each step's
            # finals sent as they come: the client waits for a silent server only so long.
            if self._lease is not None and self._lease.has("drain"):
                while (events := await self._engine("drain")) is not None:
                    for final in self._answers.stop(events):
                        await self._send(final)
            for final in self._answers.stop(await self._engine("flush") or []):
                await self._send(final)
            await self._send(self._protocol.stopped())
        except ConnectionClosed:
            self._end_session("client sent audioStop and closed before the reply")
            raise
        self._end_session("stopped")

    async def _engine(self, method: str, *args: Any) -> list[Partial | Final] | None:
        from websockets.exceptions import ConnectionClosed

        assert self._lease is not None
        try:
            async with self._turns.turn():  # round-robin with the other sessions' calls
                turns, began = self._turns, asyncio.get_running_loop().time()
                alone, granted = turns.running == 1, turns.granted
                events = await self._lease.call(method, *args)
                if self._load is not None and method == "feed" and alone and turns.granted == granted:
                    self._load.decoded(len(args[0]) / 2 / SAMPLE_RATE, asyncio.get_running_loop().time() - began)
                return events  # type: ignore[no-any-return]
        except Exception as exc:
            logger.exception("session %s: engine %s failed", self._session_id, method)
            self._release(reuse=False)
            with contextlib.suppress(ConnectionClosed):
                await self._send(ServerProtocol.error(AUDIO_STREAM, f"the engine failed: {_reason(exc)}", 500))
                await self._ws.close(1011, "engine failed")
            raise _EngineFailed from None

    async def _close_idle(self) -> None:
        from websockets.exceptions import ConnectionClosed

        idle = self._settings.idle_timeout_now(heard=self._answers.samples > 0, in_session=self._lease is not None)
        said = ", no audio sent" if self._lease is not None and not self._answers.samples else ""
        if self._lease is not None and self._answers.samples:  # what was heard goes out before the close
            try:
                for final in self._answers.stop(await self._engine("flush") or []):
                    await self._send(final)
            except (_EngineFailed, ConnectionClosed):
                return  # the client was told, or left: nothing more to send
            said = "; the finals of the audio it sent came first"
        await self._send(self._protocol.error(AUDIO_STREAM, f"closed: idle for {idle:g} s{said}"))
        await self._ws.close(1000, "idle timeout")
        self._end_session(f"closed after {idle:g} s idle")

    async def _send(self, text: str) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._ws.send(text)
        except ConnectionClosed:
            self._gone = True
            raise

    # ----------------------------------------------------------------- session
    def _end_session(self, how: str) -> None:
        if self._lease is None:
            return
        refused = f", {self._refused_chunks} chunks refused (queue full)" if self._refused_chunks else ""
        logger.info(
            "session %s: %.1f s of audio, %d finals, %s%s",
            self._session_id,
            self._answers.samples / SAMPLE_RATE,
            self._answers.finals,
            how,
            refused,
        )
        self._release()

    def _release(self, *, reuse: bool = True) -> None:
        if self._load is not None:
            self._load.closed(self)
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release(reuse=reuse)


def _reason(exc: BaseException) -> str:
    """An engine's failure in one line, for the client (the traceback stays in the server's log)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
