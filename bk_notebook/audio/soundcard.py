"""``SoundCard``: live 16 kHz mono int16 chunks from the machine's sound card (PortAudio).

Theory of operation: PortAudio calls ``_on_block`` on its own real-time thread
with each block in the device's native format (e.g. 44.1 kHz stereo float32);
that callback only copies the block into a bounded queue.  A converter thread
turns the blocks into 16 kHz mono int16 (:class:`~bk_notebook.audio.pcm.BlockConverter`: downmix, soxr's
streaming HQ resampler, rounding), cuts them into 3200-byte (100 ms) chunks
(:class:`Rechunker`) and hands each chunk to the ``on_chunk`` callbacks.
``async for chunk in card`` is one such callback feeding an asyncio queue
through ``loop.call_soon_threadsafe``, as the Transcriber feeds itself from the
browser's microphone.  Memory is constant: the converter keeps only the
resampler's filter state and less than one chunk of carry, and the queues are
bounded (the oldest audio is dropped, and counted, when a consumer falls
behind by more than ``backlog_seconds``).

sounddevice (and so PortAudio) is imported only when a ``SoundCard`` is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any

import numpy as np

from ..errors import DeviceError
from ..protocol import CHUNK_BYTES, SAMPLE_RATE
from .capture import AsyncDropOldest, CaptureCallbacks, ThreadDropOldest
from .devices import InputDevice, device_error, input_devices, quiet_native_stderr, resolve_device, sounddevice
from .live import SILENCE_DBFS, Rechunker, level_dbfs
from .pcm import BlockConverter

__all__ = ["LiveChunks", "SoundCard"]

logger = logging.getLogger("bk_notebook.audio.soundcard")

BLOCK_SECONDS = 0.1  # PortAudio hands over 100 ms blocks
_CHUNK_SECONDS = CHUNK_BYTES / 2 / SAMPLE_RATE


# ------------------------------------------------------------------ SoundCard
class SoundCard(CaptureCallbacks):
    """The machine's sound card as a live source of 16 kHz mono int16 chunks.

    Use it as an async iterator (``async for chunk in card: await s.send(chunk)``:
    the capture starts with the loop and stops when :meth:`stop` is called or the
    loop is left) or as a source for the :class:`~bk_notebook.widgets.Transcriber`;
    it has the :class:`~bk_notebook.widgets.Microphone`'s shape (``on_chunk``,
    ``on_stop``, ``on_error``, ``start``, ``stop``).  Each chunk is 3200 bytes
    (100 ms) except possibly the last one.

    Parameters
    ----------
    device : int or str, optional
        PortAudio input device: its index, its name, or a unique part of its
        name; ``None`` for the system's default input.
    samplerate : float, optional
        Rate to open the device at; its default (native) rate when ``None``.
    channels : int, optional
        Channels to record (averaged to mono); at most 2 by default.
    backlog_seconds : float
        Audio that may wait for a slow consumer; older audio is dropped and
        counted in :attr:`dropped_seconds`.

    Attributes
    ----------
    level : float
        RMS level of the last chunk in dBFS (``SILENCE_DBFS`` for silence).
    dropped_seconds : float
        Audio dropped since the last start: device overflows, or a consumer behind
        by more than ``backlog_seconds``.
    seconds_captured : float
        Audio delivered by the device since the last start.

    Raises
    ------
    DeviceError
        No such device, or a rate or channel count it cannot record.
    MissingDependency
        sounddevice or the PortAudio library is not installed.
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        device: int | str | None = None,
        *,
        samplerate: float | None = None,
        channels: int | None = None,
        backlog_seconds: float = 60.0,
    ) -> None:
        self._sd = sounddevice()
        self.device = resolve_device(input_devices(self._sd), device)
        self.native_rate = float(samplerate) if samplerate is not None else self.device.default_samplerate
        self.channels = channels if channels is not None else min(2, self.device.channels)
        if not backlog_seconds > 0:
            raise DeviceError(f"backlog_seconds must be positive, got {backlog_seconds!r}")
        self.backlog_seconds = float(backlog_seconds)
        try:
            with quiet_native_stderr():
                self._sd.check_input_settings(self.device.index, self.channels, "float32", None, self.native_rate)
        except self._sd.PortAudioError as exc:
            raise device_error(exc, self.device, self.native_rate, self.channels) from None
        self.level = SILENCE_DBFS
        self.dropped_seconds = 0.0
        self._frames = 0
        self._init_callbacks()
        self._lock = threading.Lock()
        self._stream: Any = None
        self._worker: threading.Thread | None = None
        self._block_rate = self.native_rate
        self._blocks = self._new_block_queue()
        self._stopping = False

    def __repr__(self) -> str:
        state = "running" if self.running else "idle"
        return f"SoundCard(device={self.device.index} {self.device.name!r}, {self.native_rate:g} Hz, {state})"

    @classmethod
    def devices(cls) -> list[InputDevice]:
        """Every input device PortAudio sees; ``is_default`` marks the default one."""
        return input_devices(sounddevice())

    @property
    def running(self) -> bool:
        return self._worker is not None

    @property
    def seconds_captured(self) -> float:
        """Seconds of audio the device has delivered since the last :meth:`start`."""
        return self._frames / self.native_rate

    def start(self) -> None:
        """Open the device and start capturing; raises :class:`DeviceError` if it cannot be opened."""
        with self._lock:
            if self._worker is not None:
                return
            blocksize = max(1, round(self.native_rate * BLOCK_SECONDS))
            self._block_rate = self.native_rate
            self._blocks = self._new_block_queue()
            self._stopping = False
            self.dropped_seconds = 0.0
            self._frames = 0
            try:
                with quiet_native_stderr():
                    stream = self._sd.InputStream(
                        device=self.device.index, samplerate=self.native_rate, channels=self.channels,
                        dtype="float32", blocksize=blocksize, callback=self._on_block,
                        finished_callback=self._on_finished,
                    )
                    stream.start()
            except self._sd.PortAudioError as exc:
                raise device_error(exc, self.device, self.native_rate, self.channels) from None
            self._stream = stream
            self._block_rate = float(stream.samplerate)
            converter = BlockConverter(self._block_rate, self.channels)
            self._worker = threading.Thread(
                target=self._convert, args=(self._blocks, converter), name="bk-soundcard", daemon=True
            )
            self._worker.start()

    def stop(self) -> None:
        """Stop capturing; the audio already recorded is still converted and delivered."""
        with self._lock:
            worker, stream = self._worker, self._stream
            if worker is None:
                return
            self._stopping = True
            self._stream = None
            if stream is not None:
                with contextlib.suppress(Exception), quiet_native_stderr():
                    stream.stop()  # returns once the callback will not run again
                    stream.close()
            self._blocks.put_nowait(None)
        if worker is not threading.current_thread():  # a callback may stop the card itself
            worker.join()
        with self._lock:
            if self._worker is worker:
                self._worker = None

    # --------------------------------------------------------------- threads
    def _new_block_queue(self) -> ThreadDropOldest:
        # PortAudio's blocks waiting for the converter: at most backlog_seconds, the oldest dropped first.
        return ThreadDropOldest(max(1, round(self.backlog_seconds / BLOCK_SECONDS)), self._count_dropped_block)

    def _count_dropped_block(self, block: np.ndarray | None) -> None:
        if block is not None:
            self.dropped_seconds += len(block) / self._block_rate

    def _on_block(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        # PortAudio's thread: copy and hand over, nothing more.
        if status and status.input_overflow:
            self.dropped_seconds += frames / self.native_rate
        self._frames += frames
        self._blocks.push(indata.copy())

    def _on_finished(self) -> None:
        if not self._stopping:  # the stream ended without stop(): the device failed or went away
            self._emit_error(f"input device {self.device.index} ({self.device.name!r}) stopped delivering audio")
            self._blocks.put_nowait(None)

    def _convert(self, blocks: ThreadDropOldest, converter: BlockConverter) -> None:
        chunker = Rechunker()
        try:
            while (block := blocks.get()) is not None:  # when it falls behind, push() dropped the oldest
                for chunk in chunker.push(converter.convert(block)):
                    self._emit_chunk(chunk)
            for chunk in chunker.push(converter.flush()):
                self._emit_chunk(chunk)
            rest = chunker.flush()
            if rest:
                self._emit_chunk(rest)
        except Exception as exc:  # noqa: BLE001 - reported to the consumer, never lost in a thread
            self._emit_error(f"converting the sound card's audio failed: {type(exc).__name__}: {exc}")
        finally:
            self._fire_stop()
            if not self._stopping:  # ended on its own: release the device
                threading.Thread(target=self.stop, name="bk-soundcard-stop", daemon=True).start()

    def _emit_chunk(self, chunk: bytes) -> None:
        self.level = level_dbfs(chunk)
        self._fire_chunk(chunk)

    def _emit_error(self, message: str) -> None:
        logger.warning("%s", message)
        self._fire_error(message)

    def _call_callback(self, callback: Callable[..., Any], *args: Any) -> None:
        _call(callback, *args)  # on the converter's thread: a consumer's error is logged, not fatal

    # ------------------------------------------------------------------ async
    def chunks(self) -> LiveChunks:
        """Start capturing (if needed) and return an async iterator of its chunks.

        Subscribes at once, so no chunk is missed between this call and the first
        ``await``; must be called with the event loop running.  ``close()`` it when
        done (it stops the card if it started it).
        """
        return LiveChunks(self, asyncio.get_running_loop())

    async def __aiter__(self) -> AsyncGenerator[bytes, None]:
        feed = self.chunks()
        try:
            async for chunk in feed:
                yield chunk
        finally:
            feed.close()


class LiveChunks:
    """The chunks of a running :class:`SoundCard`, on an event loop; see :meth:`SoundCard.chunks`.

    Iteration ends when the card stops.  If the device failed, every chunk it
    captured comes first, then :class:`~bk_notebook.errors.DeviceError` is raised.
    """

    def __init__(self, card: SoundCard, loop: asyncio.AbstractEventLoop) -> None:
        self._card = card
        self._loop = loop
        # live audio must not pile up without bound: the oldest chunk waiting is dropped, and counted
        self._queue = AsyncDropOldest(round(card.backlog_seconds / _CHUNK_SECONDS), self._count_dropped)
        self._closed = False
        self._failure: DeviceError | None = None
        card.on_chunk(self._from_thread)
        card.on_stop(self._stopped_from_thread)
        card.on_error(self._error_from_thread)
        self._started_here = not card.running
        try:
            card.start()
        except BaseException:
            self._unsubscribe()
            raise

    def __aiter__(self) -> LiveChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        item = await self._queue.get()
        while isinstance(item, DeviceError):  # raised after the chunks captured before the failure
            self._failure = item
            item = await self._queue.get()
        if item is None:
            self.close()
            if self._failure is not None:
                raise self._failure
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        """Stop listening (and stop the card if this iterator started it)."""
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        if self._started_here:
            self._card.stop()

    def _unsubscribe(self) -> None:
        for fn in (self._from_thread, self._stopped_from_thread, self._error_from_thread):
            self._card.remove_callback(fn)

    def _from_thread(self, chunk: bytes) -> None:
        self._loop.call_soon_threadsafe(self._queue.push, chunk)

    def _stopped_from_thread(self) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, None)

    def _error_from_thread(self, message: str) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, DeviceError(message))

    def _count_dropped(self, _item: object) -> None:
        self._card.dropped_seconds += _CHUNK_SECONDS


def _call(callback: Callable[..., Any], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:  # a consumer's callback must not end the capture
        logger.exception("callback %r raised; the capture goes on", callback)
