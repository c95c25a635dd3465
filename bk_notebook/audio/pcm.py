"""The one audio pipeline: native blocks in, 16 kHz mono int16 out, cut into protocol chunks.

Files, arrays and live devices all convert through :class:`BlockConverter` (scale to
float, average channels, soxr's streaming HQ resampler, round to int16) and are cut
by :class:`Rechunker`, so a fix to resampling, NaN handling or chunking is made once.
Pure: numpy in, numpy or bytes out; the only state is the resampler and less than
one chunk of carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Union

import numpy as np

from ..errors import AudioError
from ..protocol import CHUNK_BYTES, SAMPLE_RATE

__all__ = [
    "MAX_CHANNELS",
    "BlockConverter",
    "Rechunker",
    "check_rate",
    "chunk_pcm",
    "convert_blocks",
    "float_to_int16",
    "is_service_pcm",
    "pcm_bytes",
    "to_float32",
]

MAX_CHANNELS = 32

RawPcm = Union[np.ndarray, bytes, bytearray, memoryview]  # 1-D int16 at 16 kHz, or its little-endian bytes


def check_rate(sr: Any) -> float:
    """A sample rate as a positive, finite float, or an :class:`AudioError` saying what to pass."""
    if sr is None:
        raise AudioError("a numpy array needs its sample rate: pass sr=, e.g. sr=44100")
    if isinstance(sr, bool) or not isinstance(sr, (int, float, np.integer, np.floating)):
        raise AudioError(f"sample rate must be a positive number, got {sr!r}")
    if not np.isfinite(sr) or sr <= 0:
        raise AudioError(f"sample rate must be a positive number of Hz, got {sr!r}")
    return float(sr)


def is_service_pcm(array: np.ndarray, rate: float) -> bool:
    """Whether ``array`` is already what the service takes (1-D int16 at 16 kHz): no conversion, no rounding."""
    return array.dtype == np.int16 and array.ndim == 1 and rate == SAMPLE_RATE and array.size > 0


def to_float32(array: np.ndarray) -> np.ndarray:
    """Scale integers by their range (unsigned ones centred first); floats pass."""
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    half = float(2 ** (array.dtype.itemsize * 8 - 1))
    floats = array.astype(np.float32)
    if array.dtype.kind == "u":
        floats -= half
    floats /= half
    return floats


def float_to_int16(y: np.ndarray) -> np.ndarray:
    """Floats in [-1, 1] (clipped beyond) to int16, rounded to nearest."""
    scaled = np.clip(y, -1.0, 1.0) * 32767.0
    return np.rint(scaled, out=scaled).astype(np.int16)


class BlockConverter:
    """Native-rate, multi-channel blocks in, 16 kHz mono int16 out, block by block.

    The state is soxr's streaming resampler (high quality, the filter behind
    ``librosa.resample``), so memory does not grow with the length of the stream
    and the output equals converting the whole recording at once.

    Parameters
    ----------
    rate : float
        The source's sample rate in Hz.
    channels : int
        Channels per frame; they are averaged.
    source : str
        What the blocks come from, for error messages (``"the device"``, ``"the file"``).
    """

    def __init__(self, rate: float, channels: int, source: str = "the audio") -> None:
        self.rate = check_rate(rate)
        whole = isinstance(channels, (int, np.integer)) and not isinstance(channels, bool)
        if not whole or not 1 <= channels <= MAX_CHANNELS:
            raise AudioError(f"channels must be a whole number from 1 to {MAX_CHANNELS}, got {channels!r}")
        self.channels = int(channels)
        self.source = source
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
            return frames[:, 0].copy()  # already the service's format; a copy, as a device may reuse its buffer
        floats = to_float32(frames)
        mono = floats.mean(axis=1, dtype=np.float32) if self.channels > 1 else floats[:, 0]
        if not np.isfinite(mono).all():
            raise AudioError(f"{self.source} has NaN or infinite samples; clean them (e.g. np.nan_to_num) or repair it")
        out = self._resampler.resample_chunk(mono) if self._resampler is not None else mono
        return float_to_int16(out)

    def flush(self) -> np.ndarray:
        """The resampler's last samples, at the end of the stream."""
        if self._resampler is None:
            return np.zeros(0, np.int16)
        return float_to_int16(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))


def convert_blocks(
    blocks: Iterable[np.ndarray], rate: float, channels: int, source: str = "the audio"
) -> Iterator[np.ndarray]:
    """Convert a stream of native blocks lazily: :class:`BlockConverter` as a generator of non-empty blocks."""
    converter = BlockConverter(rate, channels, source)
    for block in blocks:
        out = converter.convert(block)
        if out.size:
            yield out
    tail = converter.flush()
    if tail.size:
        yield tail


def pcm_bytes(pcm: RawPcm, who: str) -> memoryview:
    """The little-endian bytes of 1-D int16 PCM (an array or raw bytes), without copying."""
    if isinstance(pcm, np.ndarray):
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise AudioError(f"{who} takes 1-D int16 PCM at 16 kHz, got {pcm.dtype} {pcm.shape}; use to_pcm16 first")
        return memoryview(np.ascontiguousarray(pcm, dtype="<i2").data).cast("B")
    return memoryview(pcm).cast("B")


class Rechunker:
    """Cut int16 PCM of any length into ``size``-byte chunks, carrying the remainder."""

    def __init__(self, size: int = CHUNK_BYTES) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % 2:
            raise AudioError(f"chunk size must be a positive even number of bytes, got {size}")
        self.size = size
        self._carry = b""

    @property
    def pending(self) -> int:
        """Bytes waiting for the rest of their chunk."""
        return len(self._carry)

    def views(self, pcm: RawPcm, who: str = "the chunker") -> Iterator[bytes | memoryview]:
        """The whole chunks completed by ``pcm``, as views into it where they can be (no copy).

        Use each before ``pcm`` changes; the remainder waits for the next call.  Abandoned part
        way (a send interrupted), the rest of ``pcm`` is dropped whole: no later chunk may come
        out before the ones skipped.
        """
        data = pcm_bytes(pcm, who)
        if self._carry:
            head = self.size - len(self._carry)
            self._carry += bytes(data[:head])
            data = data[head:]
            if len(self._carry) < self.size:
                return
            chunk, self._carry = self._carry, b""
            yield chunk
        whole = len(data) - len(data) % self.size
        for at in range(0, whole, self.size):
            yield data[at : at + self.size]
        self._carry = bytes(data[whole:])  # only once every whole chunk went out

    def push(self, pcm: RawPcm) -> list[bytes]:
        """The whole chunks completed by ``pcm``, as bytes of their own; the rest waits for the next push."""
        return [bytes(chunk) for chunk in self.views(pcm)]

    def flush(self) -> bytes:
        """The remainder (shorter than one chunk, possibly empty)."""
        rest, self._carry = self._carry, b""
        return rest


def chunk_pcm(pcm: RawPcm, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield ``size``-byte chunks of PCM (3200 bytes = 100 ms); the last may be shorter.

    ``pcm`` is a 1-D ``int16`` array (see :func:`~bk_notebook.to_pcm16`) or raw little-endian bytes.
    """
    chunker = Rechunker(size)
    for chunk in chunker.views(pcm, "chunk_pcm"):
        yield bytes(chunk)
    rest = chunker.flush()
    if rest:
        yield rest

