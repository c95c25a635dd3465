"""Live audio, block by block: native-rate blocks in, 16 kHz mono int16 chunks out.

Pure and push-driven (numpy in, numpy out; the only state is soxr's streaming
resampler and less than one chunk of carry), so a sound card's callback thread
can feed it one block at a time with constant memory, and a test can feed it
any split of a recording and compare with :func:`~bk_notebook.audio.convert.to_pcm16`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import AudioError
from ..protocol import CHUNK_BYTES, SAMPLE_RATE
from .convert import MAX_CHANNELS, _float_to_int16, _to_float32

__all__ = ["SILENCE_DBFS", "LiveConverter", "Rechunker", "convert_blocks", "level_dbfs"]

SILENCE_DBFS = -100.0  # the level of digital silence


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
