"""Audio in, 16 kHz mono signed 16-bit PCM out: pure functions, checked at the door.

``to_pcm16`` converts a whole numpy array; ``open_audio`` converts any source
lazily, so that a long file is never held in memory whole.  Both feed the block
pipeline that live sources use too (:mod:`bk_notebook.audio.pcm`); this module
decodes files and checks inputs.  Every assumption is checked up front and a
broken input raises :class:`~bk_notebook.errors.AudioError` saying what to do,
before any connection is opened.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import AudioError
from ..protocol import CHUNK_BYTES, SAMPLE_RATE
from .pcm import MAX_CHANNELS, check_rate, chunk_pcm, convert_blocks, is_service_pcm, to_float32

__all__ = [
    "CHUNK_BYTES",
    "SAMPLE_RATE",
    "AudioSource",
    "PcmSource",
    "chunk_pcm",
    "load_audio",
    "open_audio",
    "sample_path",
    "to_pcm16",
]

_BLOCK_FRAMES = 1 << 16  # decode granularity for files (~1.5 s at 44.1 kHz)

AudioSource = Union[np.ndarray, str, "os.PathLike[str]", bytes, bytearray, memoryview]


# ----------------------------------------------------------------------- arrays
def _checked_frames(audio: Any) -> np.ndarray:
    """Validate an array and return it as a (frames, channels) view: no copy, no conversion yet."""
    try:
        array = np.asarray(audio)
    except (TypeError, ValueError) as exc:
        raise AudioError(f"audio could not be read as a numpy array: {exc}") from exc
    kind = array.dtype.kind
    if kind == "c":
        raise AudioError("audio is complex; pass the real signal (e.g. np.real(x)) or its magnitude")
    if kind == "b":
        raise AudioError("audio is boolean; pass samples as floats in [-1, 1] or integers")
    if kind not in "fiu":
        raise AudioError(f"audio has non-numeric dtype {array.dtype}; pass floats in [-1, 1] or integers")
    if array.ndim == 0:
        raise AudioError("audio is a single number; pass a 1-D array of samples")
    if array.ndim > 2:
        raise AudioError(
            f"audio has {array.ndim} dimensions {array.shape}; pass 1-D mono or 2-D "
            "(channels, samples) / (samples, channels)"
        )
    if array.size == 0:
        raise AudioError("audio is empty: there is nothing to transcribe")
    if array.ndim == 1:
        frames = array[:, None]
    else:
        channels_first = array.shape[0] <= array.shape[1]
        if min(array.shape) > MAX_CHANNELS:
            raise AudioError(
                f"a 2-D array of shape {array.shape} does not look like (channels, samples) or "
                f"(samples, channels) with at most {MAX_CHANNELS} channels; pass 1-D mono audio"
            )
        frames = array.T if channels_first else array
    if kind == "f":
        for start in range(0, len(frames), _BLOCK_FRAMES):  # in blocks: no input-sized temporary
            if not np.isfinite(frames[start : start + _BLOCK_FRAMES]).all():
                raise AudioError("audio contains NaN or infinite values; clean it (e.g. np.nan_to_num) first")
    return frames


def _frame_blocks(frames: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(frames), _BLOCK_FRAMES):
        yield frames[start : start + _BLOCK_FRAMES]


def to_pcm16(audio: Any, sr: float | None = None) -> np.ndarray:
    """Convert audio to the service's format: 1-D ``int16`` at 16 kHz, mono.

    Resampling is soxr's high-quality filter, the one behind ``librosa.resample``
    (called directly, block by block: librosa's wrapper measured 13x slower, and
    whole-array temporaries cost memory; see BENCHMARKS.md).

    Parameters
    ----------
    audio : array_like, path or bytes
        Samples of any real dtype: floats in [-1, 1] (clipped beyond), signed or
        unsigned integers (scaled by their range); 1-D, or 2-D with channels on
        either axis (averaged).  A path or the bytes of an encoded file are
        loaded with :func:`load_audio` first.
    sr : float, optional
        Sample rate of ``audio`` in Hz; required for arrays.

    Returns
    -------
    numpy.ndarray
        1-D ``int16`` samples at 16 kHz.

    Raises
    ------
    AudioError
        Empty audio, NaN or inf, more than 2 dimensions, a missing or
        non-positive ``sr``, complex or non-numeric data, an unreadable file.
    """
    if _is_encoded(audio):
        audio, sr = load_audio(audio)
    rate = check_rate(sr)
    array = np.asarray(audio) if not isinstance(audio, np.ndarray) else audio
    if is_service_pcm(array, rate):
        return array  # already in the service's format: no copy, no rounding
    frames = _checked_frames(array)
    pcm = np.concatenate([np.zeros(0, np.int16), *convert_blocks(_frame_blocks(frames), rate, frames.shape[1])])
    if pcm.size == 0:
        raise AudioError(f"audio is too short: {array.shape[-1]} samples at {rate:g} Hz")
    return pcm


# ------------------------------------------------------------------------ files
def _is_encoded(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview))


def _describe(source: Any) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"the given bytes ({len(source)} bytes)"
    return repr(os.fspath(source))


def _check_path(source: Any) -> Any:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError("the audio bytes are empty; pass the bytes of an encoded file")
        return io.BytesIO(bytes(source))
    path = os.fspath(source)
    if not os.path.exists(path):
        raise AudioError(f"no such audio file: {path!r}; check the path")
    if os.path.isdir(path):
        raise AudioError(f"{path!r} is a folder; pass an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"audio file {path!r} is empty")
    return path


def _unreadable(source: Any, exc: BaseException | None) -> AudioError:
    detail = f" ({exc})" if exc else ""
    return AudioError(
        f"cannot decode {_describe(source)} as audio{detail}; use WAV, FLAC, OGG, MP3 or "
        "WebM/Opus, or convert it first (e.g. ffmpeg -i IN -ar 16000 -ac 1 out.wav)"
    )


@dataclass
class _Blocks:
    """Blocks of shape (frames, channels) and their rate: float32 from a decoder, an array's own dtype."""

    rate: float
    frames: int | None  # total when the container knows it
    blocks: Iterator[np.ndarray]


def _open_soundfile(target: Any) -> _Blocks | None:
    import soundfile as sf

    try:
        handle = sf.SoundFile(target)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        if isinstance(target, io.BytesIO):
            target.seek(0)
        return None

    def blocks() -> Iterator[np.ndarray]:
        with handle:
            while True:
                block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not len(block):
                    return
                yield block

    return _Blocks(float(handle.samplerate), handle.frames or None, blocks())


def _open_av(target: Any, source: Any) -> _Blocks:
    try:
        import av
    except ImportError:
        raise _unreadable(source, None) from None
    try:
        container = av.open(target)
        stream = container.streams.audio[0]
    except (av.error.FFmpegError, IndexError, ValueError, OSError) as exc:
        raise _unreadable(source, exc) from exc
    frames = None
    if container.duration:
        frames = int(container.duration / 1_000_000 * stream.rate)

    def blocks() -> Iterator[np.ndarray]:
        with container:
            try:
                for frame in container.decode(stream):
                    data = frame.to_ndarray()
                    if frame.format.is_planar:
                        data = data.T  # (channels, frames) -> (frames, channels)
                    else:
                        data = data.reshape(-1, len(frame.layout.channels))
                    yield to_float32(data)  # float32, as load_audio returns
            except av.error.FFmpegError as exc:
                raise _unreadable(source, exc) from exc

    return _Blocks(float(stream.rate), frames, blocks())


def _open_blocks(source: Any) -> _Blocks:
    target = _check_path(source)
    opened = _open_soundfile(target)
    return opened if opened is not None else _open_av(target, source)


def load_audio(source: Any) -> tuple[np.ndarray, int]:
    """Read a whole audio file (path or encoded bytes) at its own rate.

    Returns
    -------
    (samples, sr)
        float32 samples in [-1, 1], 1-D for mono or (channels, samples), and
        the sample rate in Hz.  WAV, FLAC, OGG and MP3 are read by soundfile;
        anything else (WebM/Opus from a browser recorder, M4A) by PyAV.
    """
    opened = _open_blocks(source)
    parts = list(opened.blocks)
    if not parts:
        raise AudioError(f"{_describe(source)} holds no audio samples")
    samples = np.concatenate(parts).T
    return (samples[0] if samples.shape[0] == 1 else samples), int(round(opened.rate))


# The sample's two sentences: `tools/make_sample.py` speaks them (Festival's HTS voice), the tests
# hold transcripts to them, and the webm sample is the first one alone.
_SAMPLE_SENTENCES = ("Hello world, this is a speech recognition test.", "The weather today is sunny and warm.")


def _check_sample_kind(kind: str) -> None:
    if kind not in ("wav", "webm"):
        raise AudioError(f"the bundled samples are 'wav' and 'webm', not {kind!r}")


def sample_path(kind: str = "wav") -> Path:
    """Path of the bundled English speech sample (``"wav"``, 8.4 s; ``"webm"``, a browser-style recording).

    The words are :func:`sample_text`'s, spoken by a natural synthetic voice (Festival's HTS voice
    ``cmu_us_slt_arctic_hts``), made by ``tools/make_sample.py``.
    """
    _check_sample_kind(kind)
    return Path(__file__).parents[1] / "data" / f"sample.{kind}"


def sample_text(kind: str = "wav") -> str:
    """The words spoken in the bundled sample, to compare a transcript with.

    Parameters
    ----------
    kind : str
        ``"wav"`` (two sentences, 8.4 s) or ``"webm"`` (the first sentence, 4.5 s), as for
        :func:`sample_path`.

    Returns
    -------
    str
        The text, with capitals and punctuation: the reference to score a transcript against
        (``bk.evaluate([t], [bk.sample_text()])``).
    """
    _check_sample_kind(kind)
    return " ".join(_SAMPLE_SENTENCES if kind == "wav" else _SAMPLE_SENTENCES[:1])


# ------------------------------------------------------------------ any source
class PcmSource:
    """Any audio source, validated now and converted to 16 kHz int16 as it is read.

    Files are decoded and resampled block by block (soxr's streaming
    resampler), so memory does not grow with the file's length.  Iterating
    yields 1-D ``int16`` blocks.
    """

    def __init__(self, audio: Any, sr: float | None = None) -> None:
        self._pcm: np.ndarray | None = None
        self._blocks: _Blocks | None = None
        if _is_encoded(audio):
            self._blocks = _open_blocks(audio)
            first = next(self._blocks.blocks, None)  # decode errors surface here, before any traffic
            if first is None or not len(first):
                raise AudioError(f"{_describe(audio)} holds no audio samples")
            self._first = first
            self._source = _describe(audio)
            total = self._blocks.frames
            self.duration: float | None = total / self._blocks.rate if total else None
        else:
            rate = check_rate(sr)
            array = audio if isinstance(audio, np.ndarray) else np.asarray(audio)
            if is_service_pcm(array, rate):
                self._pcm = array
                self.duration = len(array) / rate
            else:  # validated now, converted block by block as it is sent
                checked = _checked_frames(array)
                self._blocks = _Blocks(rate, len(checked), _frame_blocks(checked))
                self._first = next(self._blocks.blocks)
                self._source = "the audio"
                self.duration = len(checked) / rate

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._pcm is not None:
            yield self._pcm
            return
        assert self._blocks is not None
        blocks = _prepend(self._first, self._blocks.blocks)
        yield from convert_blocks(blocks, self._blocks.rate, self._first.shape[1], self._source)


def _prepend(first: np.ndarray, rest: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def open_audio(audio: Any, sr: float | None = None) -> PcmSource:
    """Validate ``audio`` now and return a :class:`PcmSource` that converts it lazily."""
    return PcmSource(audio, sr)
