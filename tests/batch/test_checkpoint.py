"""Resumable batches: keys, the checkpoint file, a process killed mid-batch, interrupts."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bk_notebook as bk
from bk_notebook.batch.checkpoint import Checkpoint, item_key, read_checkpoint, record_of, transcript_of
from bk_notebook.transcript import Transcript

from helpers import FIXTURES, ROOT


def make_items(n: int = 12) -> list[dict[str, Any]]:
    """Arrays of distinct lengths of sound: the energy engine's text tells them apart."""
    import numpy as np

    items = []
    for i in range(n):
        t = np.arange(int(16000 * (0.2 + 0.05 * i))) / 16000
        sound = 0.3 * np.sin(2 * np.pi * 300 * t)
        silence = np.zeros(8000)
        items.append({"id": f"clip-{i:02d}", "audio": np.concatenate([silence, sound, silence]), "sr": 16000})
    return items


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def comparable(record: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(f["segment"], f["text"], f["start"], f["end"]) for f in record["finals"]]


class CountingClient(bk.Client):
    """Records which audio was transcribed (by the id of the array object)."""

    def __init__(self, url: str, names: dict[int, str]) -> None:
        super().__init__(url)
        self.names = names
        self.transcribed: list[str] = []

    async def transcribe(self, audio: Any, sr: float | None = None, **kwargs: Any) -> bk.Transcript:
        self.transcribed.append(self.names.get(id(audio), "?"))
        return await super().transcribe(audio, sr, **kwargs)


CHILD = """
from __future__ import annotations
import asyncio, sys
import bk_notebook as bk

{make_items}

url, checkpoint, hang_from = sys.argv[1], sys.argv[2], int(sys.argv[3])
items = make_items()
index = {{id(item["audio"]): i for i, item in enumerate(items)}}

class HangingClient(bk.Client):
    async def transcribe(self, audio, sr=None, **kwargs):
        if index[id(audio)] < hang_from:
            return await super().transcribe(audio, sr, **kwargs)
        async with self.stream() as session:       # an item in flight: half its audio sent, then stuck
            await session.send(bk.to_pcm16(audio[: len(audio) // 2], sr))
            print("hanging", index[id(audio)], flush=True)
            await asyncio.Event().wait()

asyncio.run(bk.transcribe_many(items, concurrency=3, progress=False, client=HangingClient(url),
                               checkpoint=checkpoint, speed=None))
"""


def wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    """Wait on a state (not a duration): poll until true, fail after a generous timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.slow
async def test_sigkill_mid_batch_then_rerun_equals_an_uninterrupted_run(energy_server, tmp_path: Path) -> None:
    items = make_items()
    keys = [item["id"] for item in items]
    uninterrupted = tmp_path / "uninterrupted.jsonl"
    await bk.transcribe_many(make_items(), progress=False, client=bk.Client(energy_server.url),
                             checkpoint=uninterrupted, speed=None)

    killed = tmp_path / "killed.jsonl"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(make_items=textwrap.dedent(inspect.getsource(make_items))))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, str(script), energy_server.url, str(killed), "6"],
                             stdout=subprocess.PIPE, text=True, env=env)
    hanging: list[str] = []
    try:
        await asyncio.to_thread(wait_for, lambda: len(lines(killed)) == 6 or child.poll() is not None,
                                "6 finished items")
        assert child.poll() is None, "the child ended before it was killed"
        while len(hanging) < 3:  # items 6, 7 and 8 are mid-stream now
            hanging.append(await asyncio.to_thread(child.stdout.readline))
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    assert sorted(h.split()[1] for h in hanging) == ["6", "7", "8"]
    before = lines(killed)
    assert sorted(r["key"] for r in before) == keys[:6]

    rerun_items = make_items()
    client = CountingClient(energy_server.url, {id(item["audio"]): item["id"] for item in rerun_items})
    results = await bk.transcribe_many(rerun_items, concurrency=3, progress=False, client=client,
                                       checkpoint=killed, speed=None)
    assert sorted(client.transcribed) == keys[6:]  # nothing finished before the kill ran again
    after = lines(killed)
    assert sorted(r["key"] for r in after) == keys  # exactly one line per item
    reference = {r["key"]: comparable(r) for r in lines(uninterrupted)}
    assert {r["key"]: comparable(r) for r in after} == reference
    assert [r.text for r in results] == [f"sound {0.2 + 0.05 * i:.2f} s" for i in range(12)]
    assert all(r["complete"] is True for r in after)


async def test_rerun_of_a_finished_batch_transcribes_nothing(energy_server, tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    first = await bk.transcribe_many(make_items(4), progress=False, client=bk.Client(energy_server.url),
                                     checkpoint=path, speed=None)
    items = make_items(4)
    client = CountingClient(energy_server.url, {})
    again = await bk.transcribe_many(items, progress=False, client=client, checkpoint=path, speed=None)
    assert client.transcribed == []
    assert [t.text for t in again] == [t.text for t in first]
    assert [t.finals for t in again] == [t.finals for t in first]
    assert len(lines(path)) == 4


async def test_same_key_twice_is_transcribed_once(energy_server, tmp_path: Path) -> None:
    wav = FIXTURES / "hello.wav"
    item = make_items(1)[0]
    client = CountingClient(energy_server.url, {id(item["audio"]): "clip"})
    results = await bk.transcribe_many([wav, item, str(wav), item], progress=False, client=client,
                                       checkpoint=tmp_path / "c.jsonl", speed=None)
    assert sorted(client.transcribed) == ["?", "clip"]
    assert results[0] is results[2] and results[1] is results[3]
    assert sorted(r["key"] for r in lines(tmp_path / "c.jsonl")) == sorted([str(wav), "clip-00"])


async def test_failed_items_are_not_written_and_run_again(energy_server, tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    bad = {"id": "bad", "audio": np.array([0.0, np.nan]), "sr": 16000}
    items = [*make_items(2), bad]
    results = await bk.transcribe_many(items, progress=False, return_exceptions=True,
                                       client=bk.Client(energy_server.url), checkpoint=path, speed=None)
    assert isinstance(results[2], bk.AudioError)
    assert [r["key"] for r in lines(path)] in (["clip-00", "clip-01"], ["clip-01", "clip-00"])
    with pytest.raises(bk.BatchError, match="1 of 3"):
        await bk.transcribe_many(items, progress=False, client=bk.Client(energy_server.url), checkpoint=path,
                                 speed=None)
    assert len(lines(path)) == 2


@pytest.mark.pure
def test_keys() -> None:
    a = np.arange(100, dtype=np.float32)
    assert item_key({"id": 7, "audio": a, "sr": 8000}) == "7"
    assert item_key(FIXTURES / "hello.wav") == str(FIXTURES / "hello.wav")
    assert item_key({"audio": "x.wav"}) == "x.wav"
    assert item_key((a, 8000)) == item_key({"audio": a.copy(), "sr": 8000}) == item_key((a, 8000.0))
    assert item_key((a, 8000)) != item_key((a, 16000))
    assert item_key((a, 8000)) != item_key((a.astype(np.float64), 8000))
    assert item_key((a, 8000)) != item_key((a[::-1].copy(), 8000))
    assert item_key(b"RIFF....").startswith("sha256:") and item_key(b"a") != item_key(b"b")
    bare = item_key(a)  # an array without a rate, as a dict's "audio" alone
    assert bare == item_key({"audio": a}) != item_key((a, 8000))
    assert len(bare) == len("sha256:") + 32 and len(item_key(b"a")) == len(bare)


@pytest.mark.pure
def test_a_record_round_trips_through_its_line() -> None:
    t = Transcript(session_id="s1", duration=2.34567, gaps=[(1.0, 1.5)], complete=False)
    t.add_final("café", 0.1, 0.9, sent=1.0)
    t.add_final("late", None, None, sent=2.0)
    record = record_of("k", t)
    assert record == {"key": "k", "complete": False, "finals": t.records(), "text": "café late",
                      "duration": 2.346, "session_id": "s1", "gaps": [[1.0, 1.5]]}
    back = transcript_of(json.loads(json.dumps(record)))
    assert (back.finals, back.session_id, back.duration, back.gaps, back.complete) == \
        (t.finals, "s1", 2.346, [(1.0, 1.5)], False)
    assert transcript_of(record_of("k", Transcript(complete=True))).complete
    # A line written before duration, session_id and gaps were recorded still reads.
    old = transcript_of({"key": "k", "complete": True, "finals": [{"segment": 0, "text": "x"}]})
    assert (old.text, old.session_id, old.duration, old.gaps, old.complete) == ("x", None, 0.0, [], True)


@pytest.mark.pure
def test_a_torn_last_line_is_dropped_and_the_file_continues(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    good = [{"key": k, "complete": True, "finals": []} for k in "ab"]
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in good) + b'{"key": "c", "compl')
    with Checkpoint(path) as store:
        assert sorted(store.done) == ["a", "b"]
        store.append({"key": "c", "complete": True, "finals": [{"segment": 0, "text": "x"}]})
    assert [r["key"] for r in lines(path)] == ["a", "b", "c"]
    assert read_checkpoint(path)["c"]["finals"] == [{"segment": 0, "text": "x"}]


@pytest.mark.pure
def test_a_torn_line_is_dropped_only_after_a_whole_record_and_its_size_is_logged(tmp_path: Path, caplog) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"key": "a", "complete": true, "finals": []}\n{"key": "b", "com')
    with caplog.at_level(logging.WARNING, logger="bk_notebook.batch.checkpoint"), Checkpoint(path) as store:
        assert list(store.done) == ["a"]
    assert "torn last line of 17 bytes" in caplog.text
    assert [r.getMessage() for r in caplog.records] == [  # the warning names the file it cut
        f"{path}: dropping a torn last line of 17 bytes (an item that did not finish; it runs again)"]
    assert path.read_bytes() == b'{"key": "a", "complete": true, "finals": []}\n'


@pytest.mark.parametrize("content", [b'{"project":"rapat","notes":"important"}', b"x", b"\xff\xfe\x00"])
async def test_transcribe_many_refuses_a_file_that_is_not_a_checkpoint_untouched(
        energy_server, tmp_path: Path, content: bytes) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(content)
    with pytest.raises(bk.UsageError, match="not a checkpoint; its bytes are left as they are") as info:
        await bk.transcribe_many([str(FIXTURES / "hello.wav")], progress=False, client=bk.Client(energy_server.url),
                                 checkpoint=notes, speed=None)
    assert str(notes) in str(info.value) and notes.read_bytes() == content


async def test_transcribe_many_refuses_a_checkpoint_that_is_one_of_the_inputs(energy_server, tmp_path: Path) -> None:
    recording = tmp_path / "rapat.wav"
    recording.write_bytes((FIXTURES / "hello.wav").read_bytes())
    link = tmp_path / "progress.jsonl"
    link.symlink_to(recording)
    with pytest.raises(bk.UsageError, match="is one of the inputs"):
        await bk.transcribe_many([{"audio": str(recording), "id": "r"}], progress=False,
                                 client=bk.Client(energy_server.url), checkpoint=link, speed=None)
    assert recording.read_bytes() == (FIXTURES / "hello.wav").read_bytes()


@pytest.mark.pure
def test_each_line_is_fsynced_to_the_checkpoint_before_append_returns(tmp_path: Path, monkeypatch) -> None:
    # A power loss after append() returned must not lose the item: its line is on disk, not in a cache.
    path = tmp_path / "c.jsonl"
    synced: list[bytes] = []  # what the file held, on disk's side of the flush, at each fsync of it
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        if os.path.samestat(os.fstat(fd), path.stat()):  # the checkpoint's own descriptor
            synced.append(path.read_bytes())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with Checkpoint(path) as store:
        store.append({"key": "a", "complete": True, "finals": []})
        assert store.done["a"] == {"key": "a", "complete": True, "finals": []}
        assert len(synced) == 1 and synced[0].endswith(b"\n") and json.loads(synced[0])["key"] == "a"
        store.append({"key": "b", "complete": False, "finals": []})
        assert len(synced) == 2 and [json.loads(line)["key"] for line in synced[1].splitlines()] == ["a", "b"]


@pytest.mark.pure
def test_lines_are_utf8_json_and_a_nan_is_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with Checkpoint(path) as store:
        store.append({"key": 1, "complete": True, "finals": [{"text": "café"}]})
        with pytest.raises(ValueError):
            store.append({"key": "nan", "complete": True, "finals": [], "duration": float("nan")})
        assert repr(store) == f"Checkpoint({str(path)!r}, 1 items done)"
    assert path.read_bytes() == '{"key": 1, "complete": true, "finals": [{"text": "café"}]}\n'.encode()
    assert list(read_checkpoint(path)) == ["1"]


@pytest.mark.pure
def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(bk.UsageError, match="line 1 is not JSON"):
        Checkpoint(path)
    path.write_text('{"key": "a"}\n')
    with pytest.raises(bk.UsageError, match="lacks"):
        Checkpoint(path)
    with pytest.raises(bk.UsageError, match="directory"):
        Checkpoint(tmp_path)


async def test_interrupt_returns_though_items_are_slow_to_close(energy_server, tmp_path: Path, caplog) -> None:
    """Issue #11: 8 items, concurrency 4, interrupted after 4 finished: control returns, the 4 are kept."""
    items = make_items(8)
    index = {id(item["audio"]): i for i, item in enumerate(items)}
    started = asyncio.Event()
    release = asyncio.Event()
    closing: set[int] = set()

    class SlowToClose(bk.Client):
        async def transcribe(self, audio: Any, sr: float | None = None, **kwargs: Any) -> bk.Transcript:
            i = index[id(audio)]
            if i < 4:
                return await super().transcribe(audio, sr, **kwargs)
            if i == 7:
                started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                closing.add(i)
                await release.wait()  # a session that takes its time to close after the cancel
                closing.discard(i)
                raise
            raise AssertionError("unreachable")

    path = tmp_path / "c.jsonl"
    batch = asyncio.ensure_future(bk.transcribe_many(items, concurrency=4, progress=False,
                                                     client=SlowToClose(energy_server.url),
                                                     checkpoint=path, speed=None))
    await asyncio.wait_for(started.wait(), 60)
    caplog.set_level(logging.WARNING, "bk_notebook.batch.run")
    batch.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(batch, 30)
        assert closing == {4, 5, 6, 7}  # control came back while they were still closing
        assert sorted(r["key"] for r in lines(path)) == [f"clip-{i:02d}" for i in range(4)]
        assert "4 of 8 items had finished, in the checkpoint" in caplog.text
    finally:
        release.set()
    for _ in range(1000):  # they end once released: nothing is left running
        if not closing:
            break
        await asyncio.sleep(0.01)
    assert not closing


@pytest.mark.slow
def test_cli_recursive_checkpoint_resume(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    for name in ("hello", "numbers"):
        (folder / f"{name}.wav").write_bytes((FIXTURES / f"{name}.wav").read_bytes())
    (folder / "sub" / "tomorrow.wav").write_bytes((FIXTURES / "tomorrow.wav").read_bytes())
    (folder / "notes.txt").write_text("not audio")
    out = tmp_path / "results.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "bk_notebook.cli", "transcribe", str(folder), "--recursive", "--checkpoint", str(out),
           "--local", "--engine", "energy", "--speed", "max", "--format", "jsonl"]
    for flat in ([c for c in cmd if c != "--recursive"], cmd[:5] + ["--local", "--engine", "energy"]):
        refused = subprocess.run(flat, capture_output=True, text=True, env=env, timeout=120)
        assert refused.returncode == 2 and "--recursive" in refused.stderr, refused.stderr
    assert not out.exists()
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    keys = sorted(r["key"] for r in lines(out))
    assert keys == sorted(str(folder / p) for p in ("hello.wav", "numbers.wav", "sub/tomorrow.wav"))
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 2 and "--resume" in again.stderr  # refuses to mix two runs silently
    first_line = out.read_text().splitlines()[0]
    out.write_text(first_line + "\n")  # as if killed after the first item
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_text().splitlines()[0] == first_line  # kept, not transcribed again
    assert sorted(r["key"] for r in lines(out)) == keys
    assert {json.loads(line)["file"] for line in resumed.stdout.splitlines()} == set(keys)


# ------------------------------------------------------------------ the edges: a full disk, bad bytes, two writers
def many_finals_item(key: str, bursts: int = 100) -> dict[str, Any]:
    """One item whose checkpoint line is long (~15 KB): ``bursts`` stretches of sound, one final each."""
    t = np.arange(3200) / 16000
    burst = np.concatenate([0.3 * np.sin(2 * np.pi * 300 * t), np.zeros(6400)])
    return {"id": key, "audio": np.tile(burst, bursts), "sr": 16000}


def long_record(key: str, finals: int = 80) -> dict[str, Any]:
    return {"key": key, "complete": True, "finals": [{"segment": i, "text": f"word {i} " * 12, "start": i,
                                                      "end": i + 1} for i in range(finals)]}


def test_a_write_that_fills_the_disk_is_rolled_back_and_the_file_continues(small_disk: Path) -> None:
    from helpers import fill

    path = small_disk / "c.jsonl"
    with Checkpoint(path) as store:
        store.append(long_record("a"))
        filler = fill(small_disk, leave=4096)  # less than the next line: the write fails half way
        assert len(json.dumps(long_record("b"))) > 8192
        with pytest.raises(bk.CheckpointError, match=f"cannot write the checkpoint {path}") as info:
            store.append(long_record("b"))
        assert info.value.path == str(path)
        assert path.read_bytes().endswith(b"\n") and [r["key"] for r in lines(path)] == ["a"]  # no half line
        filler.unlink()  # the space comes back
        store.append(long_record("c"))
    assert list(read_checkpoint(path)) == ["a", "c"]  # every line whole: a rerun can open it
    with Checkpoint(path) as again:
        assert sorted(again.done) == ["a", "c"]


async def test_a_full_disk_stops_the_batch_and_keeps_every_result(energy_server, small_disk: Path,
                                                                  caplog: Any) -> None:
    from helpers import fill

    path = small_disk / "c.jsonl"
    items = [many_finals_item(f"item-{i}") for i in range(6)]
    fill(small_disk, leave=24 * 1024)  # room for one long line, not two
    client = bk.Client(energy_server.url)
    with pytest.raises(bk.CheckpointError) as info:
        await bk.transcribe_many(items, concurrency=1, progress=False, client=client, checkpoint=path, speed=None)
    results = info.value.results
    finished = [r for r in results if isinstance(r, bk.Transcript)]
    assert len(finished) == 2 and results[2:] == [None] * 4  # the second line failed: nothing new started
    assert all(len(r.finals) == 100 and r.complete for r in finished)  # both kept in memory
    assert [r["key"] for r in lines(path)] == ["item-0"]  # the file holds whole lines only
    assert str(path) in str(info.value) and "run the same call again" in str(info.value)
    assert "never retrieved" not in caplog.text


@pytest.mark.pure
def test_a_line_that_is_not_utf8_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"key": "a", "complete": true, "finals": []}\n{"key": "\xff\xfe", "complete": true}\n')
    with pytest.raises(bk.UsageError, match=rf"{path}: line 2 is not UTF-8"):
        read_checkpoint(path)
    with pytest.raises(bk.UsageError, match=rf"^{path}: line 2 is not UTF-8 text \(byte 10\); is this a checkpoint\?"):
        read_checkpoint(path)  # the first bad byte, counted from 1


@pytest.mark.parametrize("record, problem", [
    ({"key": [1], "complete": True, "finals": []}, "'key' is not a string"),
    ({"key": "a", "complete": "yes", "finals": []}, "'complete' is not true or false"),
    ({"key": "a", "complete": True, "finals": "hello"}, "'finals' is not a list"),
    ({"key": "a", "complete": True, "finals": [{"segment": 0}]}, "'finals' is not a list of records with a 'text'"),
    ({"key": "a", "complete": True, "finals": [], "duration": "long"}, "'duration' is not a number"),
    ({"key": "a", "complete": True, "finals": [], "gaps": [[1, 2, 3]]}, "'gaps' is not a list of"),
])
@pytest.mark.pure
def test_malformed_fields_are_a_usage_error_with_the_line(tmp_path: Path, record: dict[str, Any],
                                                          problem: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"key": "ok", "complete": True, "finals": []}) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(bk.UsageError, match=rf"line 2: {problem}"):
        Checkpoint(path)


def test_a_second_writer_is_refused_at_once_in_this_process_and_another(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with Checkpoint(path):
        with pytest.raises(bk.UsageError, match="being written by another run"):
            Checkpoint(path)
    Checkpoint(path).close()  # closing released the lock
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from bk_notebook.batch.checkpoint import Checkpoint
        store = Checkpoint({str(path)!r})
        print("holding", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(bk.UsageError, match="another process"):
            Checkpoint(path)
    finally:
        holder.kill()
        holder.wait()
    Checkpoint(path).close()  # the lock died with its process


async def test_ids_that_differ_only_in_type_are_refused(energy_server, tmp_path: Path) -> None:
    a = np.zeros(1600)
    client = bk.Client(energy_server.url)
    with pytest.raises(bk.UsageError, match="differ only in type"):
        await bk.transcribe_many([{"id": 1, "audio": a, "sr": 16000}, {"id": "1", "audio": a + 0.1, "sr": 16000}],
                                 progress=False, client=client, checkpoint=tmp_path / "c.jsonl")
    assert not (tmp_path / "c.jsonl").exists() or lines(tmp_path / "c.jsonl") == []
    # A DataFrame's NumPy integers and Python ints are one kind of id: the same number is the same item.
    same = [{"id": np.int64(1), "audio": a, "sr": 16000}, {"id": 1, "audio": a, "sr": 16000}]
    results = await bk.transcribe_many(same, progress=False, client=client, checkpoint=tmp_path / "d.jsonl", speed=None)
    assert results[0] is results[1]


async def test_a_checkpoint_reused_for_other_audio_transcribes_it_again_and_says_so(
        energy_server, tmp_path: Path, caplog: Any) -> None:
    path = tmp_path / "c.jsonl"
    first = make_items(3)
    client = bk.Client(energy_server.url)
    before = await bk.transcribe_many(first, progress=False, client=client, checkpoint=path, speed=None)
    other = [dict(item) for item in make_items(6)[3:]]
    for item, reused in zip(other, first, strict=True):
        item["id"] = reused["id"]  # same ids, other recordings
    with caplog.at_level(logging.WARNING, logger="bk_notebook.batch.run"):
        after = await bk.transcribe_many(other, progress=False, client=client, checkpoint=path, speed=None)
    assert [t.text for t in after] != [t.text for t in before]
    fresh = await bk.transcribe_many(other, progress=False, client=client, speed=None)
    assert [t.text for t in after] == [t.text for t in fresh]
    assert "3 item(s) changed since the checkpoint" in caplog.text
    again = CountingClient(energy_server.url, {id(item["audio"]): item["id"] for item in other})
    await bk.transcribe_many(other, progress=False, client=again, checkpoint=path, speed=None)
    assert again.transcribed == []  # the new lines are the ones that count now


# ------------------------------------------------------------ pure: fingerprints, ids, the lock in this process
@pytest.mark.pure
def test_a_fingerprint_changes_with_the_audio_and_not_with_a_copy(tmp_path: Path) -> None:
    from bk_notebook.batch.checkpoint import fingerprint

    big = bytes(range(256)) * 600  # 150 KiB: more than the two 64 KiB ends
    assert fingerprint(big) == fingerprint(bytearray(big)) == fingerprint(memoryview(big))
    assert fingerprint(big).startswith(f"bytes:{len(big)}:")
    for changed in (b"x" + big[1:], big[:-1] + b"x", big + b"x", big[:-1]):  # first byte, last, longer, shorter
        assert fingerprint(changed) != fingerprint(big)

    a = np.arange(40000, dtype=np.int16)  # longer than the two seconds hashed at each end (16 kHz)
    assert fingerprint(a, 16000) == fingerprint(a.copy(), 16000.0)
    first, last = a.copy(), a.copy()
    first[0], last[-1] = 7, 7
    for other in ((first, 16000), (last, 16000), (a.astype(np.int32), 16000), (a.reshape(-1, 2), 16000),
                  (a, 8000), (a, None), (a[:-1], 16000)):
        assert fingerprint(*other) != fingerprint(a, 16000), other
    assert fingerprint(a).startswith("array:<i2(40000,):sr=None:")
    assert fingerprint(a, 16000).startswith("array:<i2(40000,):sr=16000.0:")

    path = tmp_path / "a.wav"
    path.write_bytes(big)
    before = fingerprint(path)
    assert before == fingerprint(str(path)) and before.startswith(f"file:{len(big)}:")
    path.write_bytes(big + b"more")
    assert fingerprint(path) != before
    assert fingerprint(tmp_path / "gone.wav") == "file:missing"  # a missing file is told apart, never raised


@pytest.mark.pure
def test_a_fingerprint_reads_only_the_ends_of_the_audio() -> None:
    """Cheap by design: the first and last 64 KiB of bytes, the first and last two seconds of samples."""
    import re

    from bk_notebook.batch.checkpoint import fingerprint

    def changed(data: bytes, at: int) -> bytes:
        return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]

    data = bytes(range(256)) * 1024  # 256 KiB
    head, tail = 65536, len(data) - 65536
    assert re.fullmatch(r"bytes:262144:[0-9a-f]{16}", fingerprint(data))
    assert fingerprint(changed(data, head - 1)) != fingerprint(data) != fingerprint(changed(data, tail))
    assert fingerprint(changed(data, head)) == fingerprint(data) == fingerprint(changed(data, tail - 1))

    for shape, sr in (((80000,), 8000), ((40000, 2), 8000), ((80000,), None)):
        samples = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
        flat = samples.reshape(-1)
        ends = 2 * int(sr or 16000)  # samples, whatever the channels
        assert re.fullmatch(r"array:<i4\(\d+,( \d+)?\):sr=[\dNone.]+:[0-9a-f]{16}", fingerprint(samples, sr))
        for at, noticed in ((ends - 1, True), (ends, False), (flat.size - ends, True), (flat.size - ends - 1, False)):
            other = flat.copy()
            other[at] += 1
            assert (fingerprint(other.reshape(shape), sr) != fingerprint(samples, sr)) is noticed, (shape, sr, at)


@pytest.mark.pure
def test_a_files_fingerprint_reads_only_its_first_and_last_mib(tmp_path: Path) -> None:
    """Other audio of the same size and time (``touch -r``) is told apart by its ends; the middle is not read."""
    from bk_notebook.batch.checkpoint import fingerprint

    mib = 1 << 20
    path, when = tmp_path / "long.wav", 1_700_000_000_123_456_789

    def of(data: bytes) -> str:
        path.write_bytes(data)
        os.utime(path, ns=(when, when))
        return fingerprint(path)

    def changed(data: bytes, at: int) -> bytes:
        return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]

    data = bytes(range(256)) * (3 * mib // 256)  # 3 MiB: a middle MiB that is not read
    plain = of(data)
    assert re.fullmatch(rf"file:{3 * mib}:{when}:[0-9a-f]{{16}}", plain)
    for at, noticed in ((0, True), (mib - 1, True), (mib, False), (2 * mib - 1, False), (2 * mib, True),
                        (3 * mib - 1, True)):
        assert (of(changed(data, at)) != plain) is noticed, at
    shorter = data[:3 * mib // 2]  # 1.5 MiB: the bytes after the first MiB are its last ones
    assert of(changed(shorter, mib + 1000)) != of(shorter)


@pytest.mark.pure
@pytest.mark.parametrize("content", [b'{"project":"rapat","notes":"important"}', b"x", b"\xff\xfe\x00"])
def test_a_file_without_a_whole_line_is_refused_and_left_as_it_is(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    message = (f"^{re.escape(str(path))} holds {len(content)} bytes and no whole line: not a checkpoint; its "
               r"bytes are left as they are \(give the checkpoint a new file\)$")
    with pytest.raises(bk.UsageError, match=message):
        read_checkpoint(path)
    with pytest.raises(bk.UsageError, match=message):
        Checkpoint(path)
    assert path.read_bytes() == content


@pytest.mark.pure
def test_ids_that_differ_only_in_type_are_refused_before_any_work() -> None:
    from bk_notebook.batch.checkpoint import check_unambiguous_ids

    def check(*ids: Any) -> None:
        items = [{"id": i, "audio": "x.wav"} if i is not None else "x.wav" for i in ids]
        check_unambiguous_ids(items, [str(i) if i is not None else "x.wav" for i in ids])

    check(1, np.int64(1))  # numbers of any type are one kind: a DataFrame's ids are NumPy integers
    check(1, 2, "3", None, None)  # distinct keys, or no id at all: nothing to refuse
    with pytest.raises(bk.UsageError, match="differ only in type"):
        check(None, 1, "1")  # an item without an id is skipped, and the check goes on
    with pytest.raises(bk.UsageError, match=r"the ids 1 and '1' differ only in type and would share the checkpoint "
                                            r"key '1'; give every item an id of one type"):
        check(1, "1")
    with pytest.raises(bk.UsageError, match="differ only in type"):
        check("True", True)  # a bool is not a number
    with pytest.raises(bk.UsageError, match=r"the ids True and 1"):
        check_unambiguous_ids([{"id": True, "audio": "a"}, {"id": 1, "audio": "b"}], ["k", "k"])
    with pytest.raises(ValueError):  # one key per item, or the pairing is wrong
        check_unambiguous_ids([{"id": 1, "audio": "a"}], [])


@pytest.mark.pure
def test_a_second_writer_in_this_process_is_refused_and_the_lock_released_on_close(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    first = Checkpoint(path)
    with pytest.raises(bk.UsageError, match=f"{path.name} is being written by another run"):
        Checkpoint(path)
    first.append(record_of("a", Transcript(finals=[{"segment": 0, "text": "x", "start": 0.0, "end": 1.0}])))
    first.close()
    first.close()  # idempotent
    with Checkpoint(path) as second:  # the lock went with the first writer
        assert "c.jsonl" in repr(second)
    assert list(read_checkpoint(path)) == ["a"]


@pytest.mark.pure
def test_a_failed_write_rolls_the_file_back_and_says_which_file_and_why(tmp_path: Path, monkeypatch) -> None:
    import errno

    from bk_notebook.batch import checkpoint as module

    path = tmp_path / "c.jsonl"
    store = Checkpoint(path)
    store.append(record_of("a", Transcript(finals=[{"segment": 0, "text": "x", "start": 0.0, "end": 1.0}])))
    before = path.read_bytes()
    real_write = os.write

    def half_then_full(fd: int, data: Any) -> int:  # the disk fills half way through the line
        if len(data) > 8:
            return real_write(fd, bytes(data[:8]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(module.os, "write", half_then_full)
    with pytest.raises(bk.CheckpointError) as caught:
        store.append(record_of("b", Transcript()))
    assert str(caught.value) == f"cannot write the checkpoint {path}: No space left on device"
    assert caught.value.path == str(path) and isinstance(caught.value.__cause__, OSError)
    assert path.read_bytes() == before and "b" not in store.done  # the half line is gone
    monkeypatch.undo()
    store.append(record_of("c", Transcript()))  # and the file goes on after it
    store.close()
    assert list(read_checkpoint(path)) == ["a", "c"]


@pytest.mark.pure
def test_a_checkpoint_is_made_readable_closed_once_and_refused_where_it_cannot_be(tmp_path: Path,
                                                                                monkeypatch) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "c.jsonl"
    closed: list[int] = []
    real_close = os.close
    monkeypatch.setattr(os, "close", lambda fd: (closed.append(fd), real_close(fd)))
    store = Checkpoint(path)
    assert path.stat().st_mode & 0o777 == 0o644 & ~umask
    store.close()
    store.close()
    assert len(closed) == 1  # the second close closes nothing (least of all another file's descriptor)
    monkeypatch.undo()
    with pytest.raises(bk.UsageError, match=rf"^cannot open the checkpoint {tmp_path / 'no' / 'c.jsonl'}: "
                                            r"No such file or directory$"):
        Checkpoint(tmp_path / "no" / "c.jsonl")
    with pytest.raises(bk.UsageError, match=rf"^the checkpoint {path} is being written by another run \(another "
                       r"process, or another transcribe_many in this kernel\); wait for it to finish, or give this "
                       r"run its own checkpoint file$"), Checkpoint(path):
        Checkpoint(path)


@pytest.mark.pure
def test_a_bad_line_names_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"key": "a", "complete": "yes", "finals": [], "gaps": [[1, "x"]]}) + "\n")
    both = (r"line 1: 'complete' is not true or false; 'gaps' is not a list of \[start, end\] pairs; "
            r"is this a checkpoint\? \(fix or delete that line\)$")
    with pytest.raises(bk.UsageError, match=both):
        read_checkpoint(path)
