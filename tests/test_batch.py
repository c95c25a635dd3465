from __future__ import annotations

import numpy as np
import pytest

import bk_notebook as bk

from conftest import FIXTURES


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return 0.3 * np.sin(2 * np.pi * 300 * t)


def items() -> list[object]:
    silence = np.zeros(16000 * 1)
    return [
        (np.concatenate([silence, tone(1.0), silence]), 16000),
        {"audio": np.array([0.0, np.nan]), "sr": 16000},  # bad: NaN
        FIXTURES / "hello.wav",
        (np.concatenate([silence, tone(0.5), silence, tone(0.7), silence]), 16000),
    ]


async def test_one_bad_item_among_good_ones_is_reported_in_place(energy_server) -> None:
    client = bk.Client(energy_server.url)
    results = await bk.transcribe_many(items(), concurrency=2, progress=False, return_exceptions=True,
                                       client=client, speed=None)
    assert isinstance(results[1], bk.AudioError)
    assert [r.text for r in results if isinstance(r, bk.Transcript)] == [
        "sound 1.00 s", results[2].text, "sound 0.50 s sound 0.70 s"]
    assert results[2].text.startswith("sound ")


async def test_without_return_exceptions_a_batch_error_keeps_every_result(energy_server) -> None:
    client = bk.Client(energy_server.url)
    with pytest.raises(bk.BatchError, match="1 of 4 items failed") as info:
        await bk.transcribe_many(items(), progress=False, client=client, speed=None)
    results = info.value.results
    assert list(info.value.errors) == [1]
    assert results[0].text == "sound 1.00 s" and results[3].text == "sound 0.50 s sound 0.70 s"


async def test_callbacks_tell_their_item_apart_with_current_item(energy_server) -> None:
    from bk_notebook.batch.run import current_item

    seconds = (3.0, 1.0, 5.0)  # streamed at once: their callbacks interleave
    audio = [(np.concatenate([tone(s - 0.5), np.zeros(8000)]), 16000) for s in seconds]
    sent: dict[object, float] = {}
    finals: dict[object, list[str]] = {}
    await bk.transcribe_many(audio, concurrency=3, progress=False, client=bk.Client(energy_server.url), speed=None,
                             on_progress=lambda s: sent.__setitem__(current_item(), s),
                             on_final=lambda r: finals.setdefault(current_item(), []).append(r["text"]))
    assert sent == {0: 3.0, 1: 1.0, 2: 5.0}
    assert finals == {0: ["sound 2.50 s"], 1: ["sound 0.50 s"], 2: ["sound 4.50 s"]}
    assert current_item() is None  # outside a batch


async def test_progress_bar_counts_items(energy_server, capsys) -> None:
    client = bk.Client(energy_server.url)
    await bk.transcribe_many([(tone(0.3), 16000)] * 3, client=client, speed=None)
    assert "3/3" in capsys.readouterr().err


async def test_bad_arguments() -> None:
    with pytest.raises(bk.UsageError, match="concurrency"):
        await bk.transcribe_many([], concurrency=0)
    with pytest.raises(bk.UsageError, match="'audio' key"):
        await bk.transcribe_many([{"sr": 1}], progress=False, return_exceptions=False,
                                 client=bk.Client("ws://127.0.0.1:9/x"))
