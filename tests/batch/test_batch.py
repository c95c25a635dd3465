from __future__ import annotations

import numpy as np
import pytest

import bk_notebook as bk

from helpers import FIXTURES


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


# ------------------------------------------------------------------ a batch that cannot work
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_no_client_no_token_no_url_is_refused_before_any_connection(monkeypatch, tmp_path) -> None:
    import socket

    monkeypatch.delenv("BK_TOKEN", raising=False)
    monkeypatch.delenv("BK_STT_URL", raising=False)
    attempts: list[object] = []

    def guard(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("the socket guard: no connection may be attempted")

    monkeypatch.setattr(socket, "getaddrinfo", guard)  # resolving the hosted service's name is traffic too
    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setattr(socket.socket, "connect_ex", guard)
    checkpoint = tmp_path / "results.jsonl"
    with pytest.raises(bk.UsageError, match="needs a token"):
        await bk.transcribe_many([(tone(0.3), 16000)] * 5, progress=False, checkpoint=checkpoint)
    assert attempts == []
    assert not checkpoint.exists()  # no item started


async def test_the_first_items_failing_alike_stop_the_batch_and_keep_what_finished(energy_server, tmp_path) -> None:
    audio = [{"id": f"item{i}", "audio": tone(0.2 + i / 10), "sr": 16000} for i in range(10)]
    checkpoint = tmp_path / "results.jsonl"
    await bk.transcribe_many(audio[:2], progress=False, checkpoint=checkpoint,
                             client=bk.Client(energy_server.url), speed=None)
    dead = bk.Client(f"ws://127.0.0.1:{closed_port()}/v1")  # the server went away: every connection refused
    with pytest.raises(bk.BatchError, match="the first 3 items failed with the same error") as info:
        await bk.transcribe_many(audio, concurrency=1, progress=False, checkpoint=checkpoint, client=dead, speed=None)
    results = info.value.results
    assert [r.text for r in results[:2]] == ["sound 0.20 s", "sound 0.30 s"]  # kept from the checkpoint
    assert [type(r) for r in results[2:5]] == [bk.ConnectError] * 3
    assert results[5:] == [None] * 5  # never started
    assert isinstance(info.value.__cause__, bk.ConnectError) and "keep_going=True" in str(info.value)


async def test_keep_going_tries_every_item_whatever_fails() -> None:
    dead = bk.Client(f"ws://127.0.0.1:{closed_port()}/v1")
    with pytest.raises(bk.BatchError, match="6 of 6 items failed") as info:
        await bk.transcribe_many([(tone(0.3), 16000)] * 6, concurrency=2, progress=False, client=dead,
                                 keep_going=True)
    assert [type(r) for r in info.value.results] == [bk.ConnectError] * 6


async def test_a_first_failure_of_the_items_own_keeps_the_batch_going() -> None:
    bad = {"audio": np.array([0.0, np.nan]), "sr": 16000}  # an AudioError: this item, not the setup
    dead = bk.Client(f"ws://127.0.0.1:{closed_port()}/v1")
    with pytest.raises(bk.BatchError, match="6 of 6 items failed") as info:
        await bk.transcribe_many([bad] + [(tone(0.3), 16000)] * 5, concurrency=1, progress=False, client=dead)
    assert [type(r) for r in info.value.results] == [bk.AudioError] + [bk.ConnectError] * 5  # every item tried
