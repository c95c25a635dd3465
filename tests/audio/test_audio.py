"""Audio conversion: every supported input to 16 kHz int16, every bad one to a clear AudioError."""

from __future__ import annotations

import numpy as np
import pytest

import bk_notebook as bk
from bk_notebook.audio.convert import CHUNK_BYTES, open_audio

from helpers import FIXTURES

pytestmark = pytest.mark.pure  # the tests mutation testing runs (TESTING.md)


def sine(sr: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float64)


def peak(pcm: np.ndarray) -> float:
    return float(np.abs(pcm[len(pcm) // 4 : -len(pcm) // 4]).max()) / 32767  # away from filter edges


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000, 11025.5])
def test_rates_round_trip_to_the_right_length_and_level(sr: float) -> None:
    pcm = bk.to_pcm16(sine(sr, 2.0), sr)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(len(pcm) - 32000) <= 1
    assert peak(pcm) == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    "dtype, scale, offset",
    [
        (np.float32, 1.0, 0),
        (np.float64, 1.0, 0),
        (np.int8, 127, 0),
        (np.int16, 32767, 0),
        (np.int32, 2**31 - 1, 0),
        (np.int64, 2**63 - 1, 0),
        (np.uint8, 127, 128),
        (np.uint16, 32767, 32768),
    ],
)
def test_dtypes_are_scaled_by_their_range(dtype: type, scale: float, offset: int) -> None:
    x = sine(16000) * scale
    if np.dtype(dtype).kind in "iu":
        x = np.round(x) + offset
    pcm = bk.to_pcm16(x.astype(dtype), 16000)
    assert pcm.dtype == np.int16 and len(pcm) == 16000
    assert peak(pcm) == pytest.approx(0.5, abs=0.01)


def test_int16_at_16k_passes_through_unchanged() -> None:
    x = (np.arange(1000) - 500).astype(np.int16)
    assert np.array_equal(bk.to_pcm16(x, 16000), x)


def test_floats_beyond_one_are_clipped() -> None:
    pcm = bk.to_pcm16(np.array([2.0, -3.0, 0.0] * 100), 16000)
    assert pcm.max() == 32767 and pcm.min() == -32767


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_multichannel_in_either_orientation_is_averaged(layout: str) -> None:
    left, right = sine(44100), np.zeros(44100)
    stereo = np.stack([left, right]) if layout == "channels_first" else np.stack([left, right], axis=1)
    pcm = bk.to_pcm16(stereo, 44100)
    assert len(pcm) == 16000
    assert peak(pcm) == pytest.approx(0.25, abs=0.01)


def test_lists_are_accepted() -> None:
    assert len(bk.to_pcm16([0.0, 0.1, -0.1] * 1000, 16000)) == 3000


@pytest.mark.parametrize(
    "audio, sr, needle",
    [
        (np.zeros(0), 16000, "empty"),
        (np.array([0.0, np.nan]), 16000, "NaN"),
        (np.array([0.0, np.inf]), 16000, "NaN or infinite"),
        (np.zeros((2, 2, 100)), 16000, "3 dimensions"),
        (np.zeros(100), None, "pass sr="),
        (np.zeros(100), 0, "positive"),
        (np.zeros(100), -8000, "positive"),
        (np.zeros(100), float("nan"), "positive"),
        (np.zeros(100), "16k", "positive number"),
        (np.zeros(100, dtype=complex), 16000, "complex"),
        (np.array(["a", "b"]), 16000, "non-numeric"),
        (np.zeros(100, dtype=bool), 16000, "boolean"),
        (np.float32(0.5), 16000, "single number"),
        (np.zeros((100, 100)), 16000, "channels"),
        (np.zeros((2, 0)), 16000, "empty"),
    ],
)
def test_bad_arrays_raise_audio_error(audio: object, sr: object, needle: str) -> None:
    with pytest.raises(bk.AudioError, match=needle) as info:
        bk.to_pcm16(audio, sr)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "fmt, subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")]
)
def test_load_audio_reads_common_formats(tmp_path, fmt: str, subtype: str) -> None:
    import soundfile as sf

    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, np.stack([sine(44100), sine(44100)], axis=1), 44100, format=fmt, subtype=subtype)
    samples, sr = bk.load_audio(path)
    assert sr == 44100 and samples.shape[0] == 2
    pcm = bk.to_pcm16(path)
    assert abs(len(pcm) - 16000) < 1200  # MP3 adds encoder padding
    assert peak(pcm) == pytest.approx(0.5, abs=0.05)


def test_load_audio_reads_webm_opus_bytes_from_a_browser_recorder() -> None:
    data = (FIXTURES / "hello.webm").read_bytes()
    samples, sr = bk.load_audio(data)
    assert sr == 48000 and samples.ndim == 1
    reference = bk.to_pcm16(FIXTURES / "hello.wav")
    pcm = bk.to_pcm16(data)
    assert abs(len(pcm) - len(reference)) < 16000 * 0.1
    assert np.std(pcm) == pytest.approx(np.std(reference), rel=0.2)


def written(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: p / "missing.wav", "no such audio file"),
        (lambda p: p, "is a folder"),
        (lambda p: written(p / "empty.wav", b""), "is empty"),
        (lambda p: written(p / "junk.wav", b"definitely not audio" * 50), "cannot decode"),
        (lambda p: b"", "bytes are empty"),
        (lambda p: b"\x00\x01garbage" * 20, "cannot decode"),
    ],
)
def test_bad_files_raise_audio_error(tmp_path, make, needle: str) -> None:
    with pytest.raises(bk.AudioError, match=needle):
        bk.load_audio(make(tmp_path))
    with pytest.raises(bk.AudioError, match=needle):
        open_audio(make(tmp_path))


def test_streaming_conversion_matches_whole_file_conversion(tmp_path) -> None:
    import soundfile as sf

    path = tmp_path / "long.wav"
    x = np.concatenate([sine(44100, 3.0), sine(44100, 3.0, 0.2)])
    sf.write(path, x, 44100, subtype="FLOAT")
    streamed = np.concatenate(list(open_audio(path)))
    whole = bk.to_pcm16(x, 44100)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    assert np.abs(streamed[:n].astype(int) - whole[:n]).max() <= 64  # same signal, both soxr HQ


def test_chunk_pcm_is_exact() -> None:
    pcm = np.arange(16000 + 300, dtype=np.int16)
    chunks = list(bk.chunk_pcm(pcm))
    assert [len(c) for c in chunks] == [CHUNK_BYTES] * 10 + [600]
    assert b"".join(chunks) == pcm.astype("<i2").tobytes()
    assert list(bk.chunk_pcm(pcm.tobytes())) == chunks
    assert list(bk.chunk_pcm(np.zeros(1600, dtype=np.int16))) == [bytes(3200)]


def test_chunk_pcm_refuses_unconverted_audio() -> None:
    with pytest.raises(bk.AudioError, match="to_pcm16"):
        list(bk.chunk_pcm(np.zeros(100, dtype=np.float32)))  # type: ignore[arg-type]
