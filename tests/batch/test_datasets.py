"""DataFrame, folder and Hugging Face Dataset inputs come back aligned with the input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import bk_notebook as bk

from helpers import FIXTURES, require

pd = require("pandas", "tabular batch input")


def sound(seconds: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    silence = np.zeros(sr // 2)
    return np.concatenate([silence, 0.3 * np.sin(2 * np.pi * 300 * t), silence])


# Lengths chosen so that the shortest finish first: completion order is not input order.
LENGTHS = [1.2, 0.3, 0.9, 0.2, 0.6]


async def test_dataframe_of_arrays_with_sr_and_ids_is_aligned(energy_server) -> None:
    rates = [16000, 8000, 16000, 22050, 8000]
    df = pd.DataFrame({"audio": [sound(s, sr) for s, sr in zip(LENGTHS, rates, strict=True)], "sr": rates,
                       "id": [f"u{i}" for i in range(5)], "speaker": list("abcde")},
                      index=[10, 20, 30, 40, 50])
    out = await bk.transcribe_many(df, concurrency=5, progress=False, client=bk.Client(energy_server.url),
                                   speed=None)
    assert list(out.index) == [10, 20, 30, 40, 50] and list(out["speaker"]) == list("abcde")
    assert list(out["text"]) == [f"sound {s:.2f} s" for s in LENGTHS]
    assert list(out["complete"]) == [True] * 5 and list(out["error"]) == [None] * 5
    assert [f[0]["text"] for f in out["finals"]] == list(out["text"])
    assert "text" not in df.columns  # the input is not modified


async def test_dataframe_of_paths_with_a_failure_in_place(energy_server, tmp_path: Path) -> None:
    (tmp_path / "broken.wav").write_bytes(b"not a wav")
    df = pd.DataFrame({"path": [str(FIXTURES / "hello.wav"), str(tmp_path / "broken.wav"),
                                str(FIXTURES / "numbers.wav")]})
    out = await bk.transcribe_many(df, progress=False, client=bk.Client(energy_server.url), speed=None)
    assert out.loc[0, "text"].startswith("sound") and out.loc[2, "text"].startswith("sound")
    assert out.loc[1, "error"].startswith("AudioError") and pd.isna(out.loc[1, "text"])
    assert list(out["complete"]) == [True, False, True]
    single = await bk.transcribe_many([FIXTURES / "numbers.wav"], progress=False,
                                      client=bk.Client(energy_server.url), speed=None)
    assert out.loc[2, "text"] == single[0].text


async def test_folder_is_globbed_sorted_and_aligned(energy_server, tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    for name, where in [("hello", "z.wav"), ("numbers", "b/a.wav"), ("tomorrow", "a.wav")]:
        shutil.copy(FIXTURES / f"{name}.wav", tmp_path / where)
    (tmp_path / "readme.txt").write_text("not audio")
    out = await bk.transcribe_many(tmp_path, progress=False, client=bk.Client(energy_server.url), speed=None)
    assert list(out["path"]) == [str(tmp_path / p) for p in ("a.wav", "b/a.wav", "z.wav")]
    for path, text in zip(out["path"], out["text"], strict=True):
        [alone] = await bk.transcribe_many([path], progress=False, client=bk.Client(energy_server.url), speed=None)
        assert text == alone.text
    only_top = await bk.transcribe_many(str(tmp_path), pattern="*.wav", progress=False,
                                        client=bk.Client(energy_server.url), speed=None)
    assert list(only_top["path"]) == [str(tmp_path / p) for p in ("a.wav", "z.wav")]


async def test_bad_tabular_input_fails_before_traffic(tmp_path: Path) -> None:
    nowhere = bk.Client("ws://127.0.0.1:9/x")
    with pytest.raises(bk.UsageError, match="which column"):
        await bk.transcribe_many(pd.DataFrame({"x": [1]}), client=nowhere)
    with pytest.raises(bk.UsageError, match="no column 'wav'"):
        await bk.transcribe_many(pd.DataFrame({"audio": [1]}), column="wav", client=nowhere)
    with pytest.raises(bk.UsageError, match="no audio files"):
        await bk.transcribe_many(tmp_path, client=nowhere)
    with pytest.raises(bk.UsageError, match="is a file"):
        await bk.transcribe_many(FIXTURES / "hello.wav", client=nowhere)
    with pytest.raises(bk.UsageError, match="wrap a single one"):
        await bk.transcribe_many((np.zeros(10), 16000), client=nowhere)


async def test_hf_dataset_with_an_audio_column_gets_new_columns(energy_server, tmp_path: Path) -> None:
    datasets = require("datasets", "Hugging Face Dataset input")
    paths = []
    for i, seconds in enumerate(LENGTHS):
        import soundfile as sf

        path = tmp_path / f"clip{i}.wav"
        sf.write(path, sound(seconds, 16000), 16000, subtype="PCM_16")
        paths.append(str(path))
    ds = datasets.Dataset.from_dict({"audio": paths, "ref": [f"r{i}" for i in range(5)]})
    ds = ds.cast_column("audio", datasets.Audio(sampling_rate=16000))  # as a hub dataset's column is typed
    out = await bk.transcribe_many(ds, concurrency=5, progress=False, client=bk.Client(energy_server.url),
                                   speed=None)
    assert isinstance(out, datasets.Dataset) and len(out) == 5
    assert out.column_names == ["audio", "ref", "text", "finals", "complete", "error"]
    assert out["ref"] == [f"r{i}" for i in range(5)]
    assert out["text"] == [f"sound {s:.2f} s" for s in LENGTHS]
    assert [f[0]["end"] - f[0]["start"] for f in out["finals"]] == pytest.approx(LENGTHS, abs=0.011)

    as_arrays = datasets.Dataset.from_dict({
        "audio": [{"array": sound(s, 8000), "sampling_rate": 8000} for s in LENGTHS], "id": list("abcde")})
    out2 = await bk.transcribe_many(as_arrays, progress=False, client=bk.Client(energy_server.url), speed=None)
    assert out2["text"] == [f"sound {s:.2f} s" for s in LENGTHS]
    assert out2["id"] == list("abcde")
