"""Live conversion, block by block, as pure functions: no sound card needed."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import bk_notebook as bk
from bk_notebook.audio.live import SILENCE_DBFS, Rechunker, convert_blocks, level_dbfs
from bk_notebook.audio.pcm import BlockConverter

pytestmark = pytest.mark.pure  # the tests mutation testing runs (TESTING.md)


def splits(n: int, how: int | str, seed: int = 0) -> Iterator[slice]:
    rng = random.Random(seed)
    at = 0
    while at < n:
        size = rng.randint(1, 9000) if how == "random" else int(how)
        yield slice(at, at + size)
        at += size


@pytest.mark.parametrize("rate", [44100, 48000, 22050])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("how", [1, 7, 441, 4410, 4800, 65536, "random"])
def test_block_by_block_equals_converting_the_whole_recording(rate: int, channels: int, how: int | str) -> None:
    rng = np.random.default_rng(rate + channels)
    x = (rng.standard_normal((int(rate * 1.3), channels)) * 0.3).astype(np.float32)
    out = np.concatenate(list(convert_blocks((x[s] for s in splits(len(x), how)), rate, channels)))
    assert out.dtype == np.int16 and out.ndim == 1
    np.testing.assert_array_equal(out, bk.to_pcm16(x, rate))


def test_16khz_mono_int16_passes_through_unchanged() -> None:
    pcm = np.random.default_rng(1).integers(-30000, 30000, 16000, dtype=np.int16)
    out = np.concatenate(list(convert_blocks((pcm[s] for s in splits(len(pcm), "random")), 16000, 1)))
    np.testing.assert_array_equal(out, pcm)


def _peak_bytes(seconds: int, rate: int = 48000) -> tuple[int, int]:
    block = (np.random.default_rng(2).standard_normal((rate // 10, 2)) * 0.1).astype(np.float32)
    converter = BlockConverter(rate, 2)
    chunker = Rechunker()
    produced = 0
    tracemalloc.start()
    try:
        for _ in range(seconds * 10):
            produced += sum(len(c) for c in chunker.push(converter.convert(block)))
        produced += len(chunker.push(converter.flush())) * 3200 + len(chunker.flush())
        return tracemalloc.get_traced_memory()[1], produced
    finally:
        tracemalloc.stop()


def test_memory_stays_constant_however_long_the_stream() -> None:
    short_peak, short_bytes = _peak_bytes(20)
    long_peak, long_bytes = _peak_bytes(400)
    assert abs(short_bytes - 20 * 32000) <= 2 and abs(long_bytes - 400 * 32000) <= 2  # all audio came out
    assert long_peak < short_peak + 64 * 1024, (short_peak, long_peak)  # 20x the audio, not 20x the memory


def test_converter_rejects_what_it_cannot_convert() -> None:
    converter = BlockConverter(44100, 2)
    with pytest.raises(bk.AudioError, match=r"shape \(frames, 2\)"):
        converter.convert(np.zeros((100, 3), np.float32))
    with pytest.raises(bk.AudioError, match="NaN"):
        converter.convert(np.full((100, 2), np.nan, np.float32))
    for rate, channels in [(0, 1), (float("nan"), 1), (44100, 0), (44100, 33), (True, 1)]:
        with pytest.raises(bk.AudioError):
            BlockConverter(rate, channels)  # type: ignore[arg-type]


def test_rechunker_cuts_exact_chunks_and_keeps_every_byte() -> None:
    rng = np.random.default_rng(3)
    for seed in range(20):
        chunker, pieces, chunks = Rechunker(), [], []
        for _ in range(30):
            piece = rng.integers(-32768, 32767, int(rng.integers(0, 5000)), dtype=np.int16)
            pieces.append(piece)
            chunks += chunker.push(piece)
        rest = chunker.flush()
        assert all(len(c) == 3200 for c in chunks) and len(rest) < 3200, seed
        assert b"".join(chunks) + rest == np.concatenate(pieces).astype("<i2").tobytes(), seed
        assert chunker.flush() == b""


def test_level_in_dbfs() -> None:
    assert level_dbfs(np.zeros(1600, np.int16)) == SILENCE_DBFS
    assert level_dbfs(b"") == SILENCE_DBFS
    t = np.arange(16000) / 16000
    half = (0.5 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    assert level_dbfs(half.tobytes()) == pytest.approx(-9.03, abs=0.1)
    assert level_dbfs(np.full(1600, -32768, np.int16)) == pytest.approx(0.0, abs=0.01)


# ------------------------------------------------- the one pipeline's edges (found by mutation testing)
def test_only_mono_int16_at_16k_skips_the_pipeline() -> None:
    stereo = np.stack([np.full(1600, 1000, np.int16), np.full(1600, 3000, np.int16)])
    assert np.array_equal(bk.to_pcm16(stereo, 16000), np.full(1600, 2000, np.int16))  # averaged, not passed on
    at_8k = np.zeros(800, np.int16)
    assert abs(len(bk.to_pcm16(at_8k, 8000)) - 1600) <= 2  # resampled, not passed on
    with pytest.raises(bk.AudioError, match="empty"):
        bk.to_pcm16(np.zeros(0, np.int16), 16000)
    with pytest.raises(bk.AudioError, match="pass sr="):
        bk.to_pcm16(np.zeros(100, np.int16))
    assert len(bk.to_pcm16(np.zeros(4), 1)) == 64_000  # any positive rate, however odd


def test_an_array_without_its_rate_is_told_exactly_what_to_pass() -> None:
    with pytest.raises(bk.AudioError) as caught:
        bk.to_pcm16(np.zeros(100, np.int16))
    assert str(caught.value) == "a numpy array needs its sample rate: pass sr=, e.g. sr=44100"


def test_the_converter_checks_its_channels_and_blocks() -> None:
    assert BlockConverter(48000, 32).channels == 32  # the most a frame may have
    for channels in (1.5, "2"):
        with pytest.raises(bk.AudioError, match="whole number from 1 to 32"):
            BlockConverter(48000, channels)  # type: ignore[arg-type]
    with pytest.raises(bk.AudioError, match="must be numeric"):
        BlockConverter(16000, 1).convert(np.array(["a", "b"]))
    assert BlockConverter(16000, 1).flush().dtype == np.int16


def test_nan_is_reported_with_what_the_audio_came_from(tmp_path: Path) -> None:
    import soundfile as sf

    with pytest.raises(bk.AudioError, match="^the audio has NaN"):
        BlockConverter(16000, 1).convert(np.array([0.0, np.nan], np.float32))
    with pytest.raises(bk.AudioError, match="^the audio has NaN"):
        list(convert_blocks([np.array([np.nan], np.float32)], 16000, 1))
    with pytest.raises(bk.AudioError, match="^the device has NaN"):
        list(convert_blocks([np.array([np.nan], np.float32)], 16000, 1, "the device"))
    path = tmp_path / "broken.wav"
    sf.write(path, np.array([0.0, np.nan, 0.1] * 2000, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(bk.AudioError, match="broken.wav' has NaN"):
        list(bk.open_audio(path))


def test_chunk_sizes_are_positive_and_even_and_errors_name_the_caller() -> None:
    for size in (0, -2, 3, 2.0, True):
        with pytest.raises(bk.AudioError, match="positive even number of bytes"):
            Rechunker(size)  # type: ignore[arg-type]
    assert Rechunker().flush() == b""  # nothing pushed, nothing held


def test_an_abandoned_push_never_lets_later_audio_out_first() -> None:
    chunker = Rechunker(4)
    chunker.push(np.array([1], np.int16))  # 2 bytes wait
    views = chunker.views(np.arange(2, 8, dtype=np.int16))  # completes 3 chunks, leaves one sample
    assert bytes(next(views)) == np.array([1, 2], "<i2").tobytes()
    assert bytes(next(views)) == np.array([3, 4], "<i2").tobytes()
    views.close()  # a send interrupted after two chunks: [5, 6] and [7] are not sent
    assert chunker.flush() == b""  # the samples after the interruption are dropped, not sent later out of order
    chunker.push(np.array([9], np.int16))
    assert chunker.push(np.array([10], np.int16)) == [np.array([9, 10], "<i2").tobytes()]
    with pytest.raises(bk.AudioError, match="^chunk_pcm takes 1-D int16"):
        list(bk.chunk_pcm(np.zeros((2, 2), np.int16)))
    with pytest.raises(bk.AudioError, match="^the chunker takes 1-D int16"):
        Rechunker().push(np.zeros(4, np.float32))
