"""``SoundCard``: live 16 kHz mono int16 chunks from the machine's sound card (PortAudio).

Theory of operation: PortAudio calls ``_on_block`` on its own real-time thread
with each block in the device's native format (e.g. 44.1 kHz stereo float32);
that callback only copies the block into a bounded queue.  A converter thread
turns the blocks into 16 kHz mono int16 (:class:`LiveConverter`: downmix, soxr's
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
import math
import os
import queue
import sys
import threading
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .audio import CHUNK_BYTES, MAX_CHANNELS, SAMPLE_RATE, _float_to_int16, _to_float32
from .errors import AudioError, DeviceError, MissingDependency

__all__ = ["InputDevice", "LiveConverter", "Rechunker", "SoundCard", "convert_blocks", "level_dbfs"]

logger = logging.getLogger("bk_notebook.soundcard")

BLOCK_SECONDS = 0.1  # PortAudio hands over 100 ms blocks
SILENCE_DBFS = -100.0  # the level of digital silence
_CHUNK_SECONDS = CHUNK_BYTES / 2 / SAMPLE_RATE


# ------------------------------------------------------------- pure conversion
class LiveConverter:
    """Native-rate, multi-channel blocks in, 16 kHz mono int16 out, block by block.

    The state is soxr's streaming resampler (high quality, the filter behind
    ``to_pcm16``), so memory does not grow with the length of the stream and the
    output equals converting the whole recording at once.

    Parameters
    ----------
    rate : float
        The device's sample rate in Hz.
    channels : int
        Channels per frame; they are averaged.
    """

    def __init__(self, rate: float, channels: int) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
            raise AudioError(f"sample rate must be a positive number of Hz, got {rate!r}")
        if isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
            raise AudioError(f"channels must be a whole number from 1 to {MAX_CHANNELS}, got {channels!r}")
        self.rate = float(rate)
        self.channels = channels
        self._resampler: Any = None
        if self.rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def convert(self, block: np.ndarray) -> np.ndarray:
        """Convert one block of shape ``(frames, channels)`` (or 1-D for mono) to int16 at 16 kHz.

        The output may be shorter or empty while the resampler fills its filter;
        :meth:`flush` returns what it still holds.
        """
        frames = np.asarray(block)
        if frames.ndim == 1 and self.channels == 1:
            frames = frames[:, None]
        if frames.ndim != 2 or frames.shape[1] != self.channels:
            raise AudioError(f"expected blocks of shape (frames, {self.channels}), got {frames.shape}")
        if frames.dtype.kind not in "fiu":
            raise AudioError(f"audio blocks must be numeric, got {frames.dtype}")
        if self._resampler is None and self.channels == 1 and frames.dtype == np.int16:
            return frames[:, 0].copy()  # already the service's format: no rounding
        floats = _to_float32(frames)
        mono = floats.mean(axis=1, dtype=np.float32) if self.channels > 1 else floats[:, 0]
        if not np.isfinite(mono).all():
            raise AudioError("the device delivered NaN or infinite samples")
        out = self._resampler.resample_chunk(mono) if self._resampler is not None else mono
        return _float_to_int16(out)

    def flush(self) -> np.ndarray:
        """The resampler's last samples, at the end of the stream."""
        if self._resampler is None:
            return np.zeros(0, np.int16)
        return _float_to_int16(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))


def convert_blocks(blocks: Iterable[np.ndarray], rate: float, channels: int) -> Iterator[np.ndarray]:
    """Convert a stream of native blocks lazily: :class:`LiveConverter` as a generator."""
    converter = LiveConverter(rate, channels)
    for block in blocks:
        out = converter.convert(block)
        if out.size:
            yield out
    tail = converter.flush()
    if tail.size:
        yield tail


class Rechunker:
    """Cut int16 PCM of any length into ``size``-byte chunks, carrying the remainder."""

    def __init__(self, size: int = CHUNK_BYTES) -> None:
        if size <= 0 or size % 2:
            raise AudioError(f"chunk size must be a positive even number of bytes, got {size}")
        self.size = size
        self._carry = b""

    def push(self, pcm: np.ndarray) -> list[bytes]:
        """The whole chunks completed by ``pcm``; the rest waits for the next push."""
        data = self._carry + np.ascontiguousarray(pcm, dtype="<i2").tobytes()
        whole = len(data) - len(data) % self.size
        self._carry = data[whole:]
        return [data[at : at + self.size] for at in range(0, whole, self.size)]

    def flush(self) -> bytes:
        """The remainder (shorter than one chunk, possibly empty)."""
        rest, self._carry = self._carry, b""
        return rest


def level_dbfs(chunk: bytes | np.ndarray) -> float:
    """RMS level of int16 PCM in dB relative to full scale (``SILENCE_DBFS`` for silence)."""
    pcm = np.frombuffer(chunk, dtype="<i2") if isinstance(chunk, (bytes, bytearray, memoryview)) else chunk
    if not len(pcm):
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(pcm.astype(np.float64))))) / 32768.0
    return max(SILENCE_DBFS, 20.0 * math.log10(rms)) if rms > 0 else SILENCE_DBFS


# ------------------------------------------------------------------ PortAudio
@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Hide ALSA's and PortAudio's own C-level chatter; our errors say what matters (not with -v)."""
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _sounddevice() -> Any:
    try:
        with _quiet_native_stderr():
            import sounddevice
    except ImportError as exc:
        raise MissingDependency(
            f"SoundCard needs sounddevice ({exc.name} is missing): pip install 'bk-notebook[soundcard]'"
        ) from exc
    except OSError as exc:  # sounddevice is there, the PortAudio library is not
        raise MissingDependency(
            f"SoundCard needs the PortAudio library ({exc}): on Debian/Ubuntu apt-get install libportaudio2"
        ) from exc
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    """An input device as PortAudio sees it."""

    index: int
    name: str
    hostapi: str
    channels: int
    default_samplerate: float
    is_default: bool


def _input_devices(sd: Any) -> list[InputDevice]:
    with _quiet_native_stderr():
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default = sd.default.device[0]
    if default is None or default < 0:
        default = next((api["default_input_device"] for api in hostapis if api["default_input_device"] >= 0), -1)
    return [
        InputDevice(d["index"], d["name"], hostapis[d["hostapi"]]["name"], d["max_input_channels"],
                    float(d["default_samplerate"]), d["index"] == default)
        for d in devices
        if d["max_input_channels"] > 0
    ]


_LIST_HINT = "`bk-notebook listen --list-devices` shows the input devices PortAudio sees"


def _resolve(devices: list[InputDevice], device: int | str | None) -> InputDevice:
    if not devices:
        raise DeviceError(
            "no input device found: connect a microphone, or check that the sound server "
            "(PulseAudio or PipeWire) is running for this user"
        )
    if device is None:
        chosen = [d for d in devices if d.is_default] or devices[:1]
        return chosen[0]
    if isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        index = int(device)
        found = [d for d in devices if d.index == index]
        if not found:
            raise DeviceError(f"no input device with index {index}; {_LIST_HINT}")
        return found[0]
    if not isinstance(device, str) or not device.strip():
        raise DeviceError(f"device must be an index or a name, got {device!r}")
    exact = [d for d in devices if d.name == device]
    if exact:
        return exact[0]
    matches = [d for d in devices if device.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DeviceError(f"no input device matching {device!r}; {_LIST_HINT}")
    names = ", ".join(repr(d.name) for d in matches)
    raise DeviceError(f"{device!r} matches several input devices ({names}); give its index or full name")


# PortAudio's error codes (portaudio.h) that a user can act on
_PA_INVALID_CHANNELS, _PA_INVALID_RATE, _PA_INVALID_DEVICE, _PA_UNAVAILABLE = -9998, -9997, -9996, -9985
_EBUSY = -16


def device_error(exc: BaseException, device: InputDevice, rate: float, channels: int) -> DeviceError:
    """Map a PortAudio failure to one clear :class:`DeviceError` line."""
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    code = args[1] if len(args) > 1 and isinstance(args[1], int) else None
    host = args[2] if len(args) > 2 and isinstance(args[2], tuple) else None
    host_code, host_text = (host[1], host[2]) if host and len(host) > 2 else (None, "")
    label = f"input device {device.index} ({device.name!r})"
    if code == _PA_INVALID_RATE:
        message = f"{label} cannot record at {rate:g} Hz; its default rate is {device.default_samplerate:g} Hz"
    elif code == _PA_INVALID_CHANNELS:
        message = f"{label} cannot record {channels} channels (it has {device.channels})"
    elif code == _PA_INVALID_DEVICE:
        message = f"{label} is gone; {_LIST_HINT}"
    elif code == _PA_UNAVAILABLE or host_code == _EBUSY:
        message = f"{label} is busy or unavailable: another program may be using it"
    else:
        detail = host_text or (args[0] if args else str(exc))
        message = f"cannot open {label}: {detail}"
    return DeviceError(message)


# ------------------------------------------------------------------ SoundCard
class SoundCard:
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
        self._sd = _sounddevice()
        self.device = _resolve(_input_devices(self._sd), device)
        self.native_rate = float(samplerate) if samplerate is not None else self.device.default_samplerate
        self.channels = channels if channels is not None else min(2, self.device.channels)
        if not backlog_seconds > 0:
            raise DeviceError(f"backlog_seconds must be positive, got {backlog_seconds!r}")
        self.backlog_seconds = float(backlog_seconds)
        try:
            with _quiet_native_stderr():
                self._sd.check_input_settings(self.device.index, self.channels, "float32", None, self.native_rate)
        except self._sd.PortAudioError as exc:
            raise device_error(exc, self.device, self.native_rate, self.channels) from None
        self.level = SILENCE_DBFS
        self.dropped_seconds = 0.0
        self._frames = 0
        self._chunk_callbacks: list[Callable[[bytes], Any]] = []
        self._stop_callbacks: list[Callable[[], Any]] = []
        self._error_callbacks: list[Callable[[str], Any]] = []
        self._lock = threading.Lock()
        self._stream: Any = None
        self._worker: threading.Thread | None = None
        self._blocks: queue.Queue[np.ndarray | None] = queue.Queue()
        self._stopping = False

    def __repr__(self) -> str:
        state = "running" if self.running else "idle"
        return f"SoundCard(device={self.device.index} {self.device.name!r}, {self.native_rate:g} Hz, {state})"

    @classmethod
    def devices(cls) -> list[InputDevice]:
        """Every input device PortAudio sees; ``is_default`` marks the default one."""
        return _input_devices(_sounddevice())

    # ------------------------------------------------------- Microphone's shape
    def on_chunk(self, callback: Callable[[bytes], Any]) -> None:
        """Call ``callback(pcm_bytes)`` for every chunk, from the converter thread."""
        self._chunk_callbacks.append(callback)

    def on_stop(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once the capture has stopped and its last chunk was delivered."""
        self._stop_callbacks.append(callback)

    def on_error(self, callback: Callable[[str], Any]) -> None:
        """Call ``callback(message)`` when the device fails while recording."""
        self._error_callbacks.append(callback)

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
            self._blocks = queue.Queue()
            self._stopping = False
            self.dropped_seconds = 0.0
            self._frames = 0
            try:
                with _quiet_native_stderr():
                    stream = self._sd.InputStream(
                        device=self.device.index, samplerate=self.native_rate, channels=self.channels,
                        dtype="float32", blocksize=blocksize, callback=self._on_block,
                        finished_callback=self._on_finished,
                    )
                    stream.start()
            except self._sd.PortAudioError as exc:
                raise device_error(exc, self.device, self.native_rate, self.channels) from None
            self._stream = stream
            converter = LiveConverter(float(stream.samplerate), self.channels)
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
                with contextlib.suppress(Exception), _quiet_native_stderr():
                    stream.stop()  # returns once the callback will not run again
                    stream.close()
            self._blocks.put(None)
        if worker is not threading.current_thread():  # a callback may stop the card itself
            worker.join()
        with self._lock:
            if self._worker is worker:
                self._worker = None

    # --------------------------------------------------------------- threads
    def _on_block(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        # PortAudio's thread: copy and hand over, nothing more.
        if status and status.input_overflow:
            self.dropped_seconds += frames / self.native_rate
        self._frames += frames
        self._blocks.put(indata.copy())

    def _on_finished(self) -> None:
        if not self._stopping:  # the stream ended without stop(): the device failed or went away
            self._emit_error(f"input device {self.device.index} ({self.device.name!r}) stopped delivering audio")
            self._blocks.put(None)

    def _convert(self, blocks: queue.Queue[np.ndarray | None], converter: LiveConverter) -> None:
        chunker = Rechunker()
        backlog = max(1, round(self.backlog_seconds / BLOCK_SECONDS))
        try:
            while (block := blocks.get()) is not None:
                while blocks.qsize() > backlog:  # the converter fell behind: drop the oldest audio
                    dropped = blocks.get()
                    if dropped is None:
                        blocks.put(None)
                        break
                    self.dropped_seconds += len(dropped) / converter.rate
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
            for callback in list(self._stop_callbacks):
                _call(callback)
            if not self._stopping:  # ended on its own: release the device
                threading.Thread(target=self.stop, name="bk-soundcard-stop", daemon=True).start()

    def _emit_chunk(self, chunk: bytes) -> None:
        self.level = level_dbfs(chunk)
        for callback in list(self._chunk_callbacks):
            _call(callback, chunk)

    def _emit_error(self, message: str) -> None:
        logger.warning("%s", message)
        for callback in list(self._error_callbacks):
            _call(callback, message)

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
    """The chunks of a running :class:`SoundCard`, on an event loop; see :meth:`SoundCard.chunks`."""

    def __init__(self, card: SoundCard, loop: asyncio.AbstractEventLoop) -> None:
        self._card = card
        self._loop = loop
        self._queue: asyncio.Queue[bytes | DeviceError | None] = asyncio.Queue()
        self._backlog = max(1, round(card.backlog_seconds / _CHUNK_SECONDS))
        self._closed = False
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
        if item is None:
            self.close()
            raise StopAsyncIteration
        if isinstance(item, DeviceError):
            self.close()
            raise item
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
        for callbacks, fn in ((self._card._chunk_callbacks, self._from_thread),
                              (self._card._stop_callbacks, self._stopped_from_thread),
                              (self._card._error_callbacks, self._error_from_thread)):
            with contextlib.suppress(ValueError):
                callbacks.remove(fn)  # type: ignore[arg-type]

    def _from_thread(self, chunk: bytes) -> None:
        self._loop.call_soon_threadsafe(self._enqueue, chunk)

    def _stopped_from_thread(self) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, None)

    def _error_from_thread(self, message: str) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, DeviceError(message))

    def _enqueue(self, chunk: bytes) -> None:
        if self._queue.qsize() >= self._backlog:  # live audio must not pile up without bound
            self._queue.get_nowait()
            self._card.dropped_seconds += _CHUNK_SECONDS
        self._queue.put_nowait(chunk)


def _call(callback: Callable[..., Any], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:  # a consumer's callback must not end the capture
        logger.exception("callback %r raised; the capture goes on", callback)
