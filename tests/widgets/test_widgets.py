"""Widgets without a browser: the comm is faked by handing messages to ipywidgets' own handler."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import Any

import numpy as np
import pytest

import bk_notebook as bk

from helpers import FIXTURES, reply, require, scripted_server

require("anywidget", "the microphone widget")
from bk_notebook.widgets import Microphone, Transcriber, from_recorder  # noqa: E402

TOKEN = "eyJhbGciOiJIUzI1NiJ9.widget-state.NEVER-SAVED"


def browser_says(widget: Any, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
    """Deliver a message as the kernel's comm does: through ipywidgets' message handler."""
    msg = {"content": {"data": {"method": "custom", "content": content}},
           "buffers": [memoryview(b) for b in buffers or []]}
    widget._handle_msg(msg)


def tone_chunks(seconds: float, silence: float = 0.5) -> list[bytes]:
    t = np.arange(int(16000 * seconds)) / 16000
    gap = np.zeros(int(16000 * silence))
    pcm = (np.concatenate([gap, 0.3 * np.sin(2 * np.pi * 300 * t), gap]) * 32767).astype("<i2").tobytes()
    return [pcm[i:i + 3200] for i in range(0, len(pcm), 3200)]


async def speak(transcriber: Transcriber, seconds: float) -> None:
    mic = transcriber.source
    browser_says(mic, {"type": "started", "sample_rate": 44100})
    for i, chunk in enumerate(tone_chunks(seconds)):
        browser_says(mic, {"type": "chunk", "seq": i}, [chunk])
        await asyncio.sleep(0)  # the kernel's loop runs between comm messages


async def press_stop(transcriber: Transcriber) -> None:
    transcriber.stop_button.click()
    browser_says(transcriber.source, {"type": "stopped"})
    await asyncio.wait_for(transcriber.wait(), 10)


def test_microphone_keeps_chunks_and_calls_back() -> None:
    mic = Microphone()
    got: list[bytes] = []
    mic.on_chunk(got.append)
    browser_says(mic, {"type": "started", "sample_rate": 44100})
    assert mic.status == "recording" and mic.browser_sample_rate == 44100
    chunks = tone_chunks(0.3)
    for i, chunk in enumerate(chunks):
        browser_says(mic, {"type": "chunk", "seq": i}, [chunk])
    browser_says(mic, {"type": "stopped"})
    assert got == chunks and mic.status == "idle"
    assert mic.recording.dtype == np.int16 and mic.recording.tobytes() == b"".join(chunks)


def test_microphone_error_is_kept_and_reported() -> None:
    mic = Microphone()
    seen: list[str] = []
    mic.on_error(seen.append)
    browser_says(mic, {"type": "error", "message": "Microphone permission denied: allow it"})
    assert mic.status == "error" and "permission denied" in mic.error and seen == [mic.error]


async def test_transcriber_streams_chunks_and_shows_partials_and_finals(energy_server) -> None:
    t = Transcriber(client=bk.Client(energy_server.url))
    partials: list[str] = []
    t.partial.observe(lambda change: partials.append(change["new"]), names="value")
    t.start_button.click()
    assert "connecting" in t.status.value and t.start_button.disabled
    await speak(t, 1.0)
    await asyncio.sleep(0.3)
    assert "streaming" in t.status.value
    await press_stop(t)
    assert any("sound 0." in p for p in partials)  # the live partial grew while audio flowed
    assert "sound 1.00 s" in t.table.value
    assert "done" in t.status.value and not t.start_button.disabled
    assert [(r["run"], r["text"]) for r in t.finals] == [(0, "sound 1.00 s")]


async def test_start_stop_twice_keeps_each_runs_finals(energy_server) -> None:
    t = Transcriber(client=bk.Client(energy_server.url))
    for seconds in (0.5, 0.8):
        t.start()
        await speak(t, seconds)
        await press_stop(t)
    assert [(r["run"], r["text"]) for r in t.finals] == [(0, "sound 0.50 s"), (1, "sound 0.80 s")]
    # The repr is also the notebook's text fallback: it says where the widget stands, never an address.
    assert repr(t) == "Transcriber(source=Microphone, status='done: 1 final, 1.8 s of audio', 2 runs, 2 finals)"
    assert repr(t.source) == "Microphone(status='idle', 1.8 s captured)"
    joined = t.transcript
    assert joined.text == "sound 0.50 s sound 0.80 s" and [r["segment"] for r in joined.finals] == [0, 1]
    assert len(joined.to_dataframe()) == 2


async def test_connection_errors_are_shown_in_the_widget() -> None:
    t = Transcriber(client=bk.Client("ws://127.0.0.1:9/v1/prod/stream", connect_retries=1))
    t.start()
    await asyncio.wait_for(t.wait(), 10)
    assert "error" in t.status.value and "cannot connect" in t.status.value
    assert not t.start_button.disabled


def test_the_status_starts_ready_and_shows_a_message_as_text_not_markup() -> None:
    t = Transcriber(client=bk.Client("ws://127.0.0.1:9/v1/prod/stream"))
    assert "status: ready" in t.status.value and "status='ready'" in repr(t)
    browser_says(t.source, {"type": "error", "message": "<img src=x onerror=alert(1)> denied"})
    assert "&lt;img src=x onerror=alert(1)&gt; denied" in t.status.value and "<img" not in t.status.value
    assert "status='error: <img src=x onerror=alert(1)> denied'" in repr(t)  # the repr is plain text


async def test_microphone_errors_are_shown_in_the_widget(energy_server) -> None:
    t = Transcriber(client=bk.Client(energy_server.url))
    t.start()
    browser_says(t.source, {"type": "error", "message": "Microphone permission denied: allow the microphone"})
    await asyncio.wait_for(t.wait(), 10)
    assert "error" in t.status.value and "permission denied" in t.status.value
    assert not t.running and not t.start_button.disabled


def test_no_token_in_widget_state_or_saved_widget_metadata() -> None:
    import ipywidgets

    client = bk.Client("ws://127.0.0.1:9/v1/prod/stream", token=TOKEN)
    t = Transcriber(client=client)
    states = json.dumps(ipywidgets.Widget.get_manager_state(drop_defaults=False), default=str)
    assert t.model_id in states
    assert TOKEN not in states and "token" not in states.lower()
    assert TOKEN not in repr(t)


async def test_uploaded_files_are_transcribed(energy_server) -> None:
    import ipywidgets

    upload = ipywidgets.FileUpload(accept="audio/*")
    t = Transcriber(client=bk.Client(energy_server.url), source=upload)
    data = (FIXTURES / "hello.wav").read_bytes()
    upload.value = ({"name": "hello.wav", "type": "audio/wav", "size": len(data), "content": memoryview(data),
                     "last_modified": __import__("datetime").datetime.now(__import__("datetime").timezone.utc)},)
    await asyncio.sleep(0)  # the upload handler hands the session to the loop
    while t._run.task is None:
        await asyncio.sleep(0)
    await asyncio.wait_for(t._run.task, 10)
    assert "done" in t.status.value and t.finals and t.finals[0]["text"].startswith("sound ")


def test_from_recorder_decodes_a_real_webm_opus_recording() -> None:
    ipywebrtc = require("ipywebrtc", "browser recordings")
    stream = ipywebrtc.CameraStream(constraints={"audio": True, "video": False})
    recorder = ipywebrtc.AudioRecorder(stream=stream)
    with pytest.raises(bk.AudioError, match="no recording yet"):
        from_recorder(recorder)
    recorder.audio.value = (FIXTURES / "hello.webm").read_bytes()
    samples, sr = from_recorder(recorder)
    assert sr == 48000 and samples.ndim == 1 and len(samples) / sr == pytest.approx(4.48, abs=0.1)


async def test_transcribe_with_display_shows_progress_partial_and_finals(energy_server) -> None:
    from bk_notebook.display import LiveDisplay

    shown: list[LiveDisplay] = []
    original = LiveDisplay.__init__

    def spy(self: LiveDisplay, duration: Any, force_widgets: Any = None) -> None:
        original(self, duration, force_widgets=True)
        shown.append(self)

    LiveDisplay.__init__ = spy  # type: ignore[method-assign]
    try:
        tone = np.concatenate([np.zeros(8000), 0.3 * np.sin(np.arange(40000) / 3), np.zeros(8000)])
        t = await bk.Client(energy_server.url).transcribe(tone, 16000, speed=None, display=True)
    finally:
        LiveDisplay.__init__ = original  # type: ignore[method-assign]
    [live] = shown
    assert live.progress_bar.value == live.progress_bar.max == pytest.approx(3.5)
    assert "3.5 / 3.5 s" in live.progress_label.value
    assert "sound 2.50 s" in live.finals_html.value and t.text == "sound 2.50 s"
    from bk_notebook.widgets import Player

    [player] = [c for c in live.box.children if isinstance(c, Player)]  # when it ends: click a line, hear it
    assert player.duration == pytest.approx(3.5) and len(player.finals) == 1


async def test_a_stalled_session_drops_the_oldest_live_audio_and_says_so(energy_server) -> None:
    from bk_notebook.widgets import transcriber as module

    t = Transcriber(client=bk.Client(energy_server.url))
    original = module._BACKLOG_CHUNKS
    module._BACKLOG_CHUNKS = 5
    try:
        t.start()
        await asyncio.sleep(0)  # the session task exists but has not connected yet
        browser_says(t.source, {"type": "started", "sample_rate": 44100})
        for i, chunk in enumerate(tone_chunks(1.0)):  # 20 chunks arrive while nothing is consumed
            browser_says(t.source, {"type": "chunk", "seq": i}, [chunk])
        await press_stop(t)
    finally:
        module._BACKLOG_CHUNKS = original
    assert "incomplete" in t.status.value and "s of audio dropped" in t.status.value


async def test_two_uploads_at_once_become_two_runs_in_order(energy_server) -> None:
    import datetime

    import ipywidgets

    upload = ipywidgets.FileUpload(accept="audio/*", multiple=True)
    t = Transcriber(client=bk.Client(energy_server.url), source=upload)
    now = datetime.datetime.now(datetime.timezone.utc)

    def wav(seconds: float) -> dict[str, Any]:
        import io

        import soundfile as sf

        buffer = io.BytesIO()
        sf.write(buffer, np.frombuffer(b"".join(tone_chunks(seconds)), "<i2"), 16000, format="WAV")
        data = buffer.getvalue()
        return {"name": f"{seconds}.wav", "type": "audio/wav", "size": len(data), "content": memoryview(data),
                "last_modified": now}

    both_done = asyncio.Event()
    t.status.observe(lambda _: both_done.set() if len(t._runs) == 2 else None, names="value")
    upload.value = (wav(0.6), wav(0.9))
    await asyncio.wait_for(both_done.wait(), 20)
    assert [(r["run"], r["text"]) for r in t.finals] == [(0, "sound 0.60 s"), (1, "sound 0.90 s")]


# ------------------------------------------------------------------ lifecycle
def widget_count() -> int:
    from ipywidgets.widgets.widget import _instances

    return len(_instances)


def statuses(t: Transcriber) -> list[str]:
    seen: list[str] = []
    t.status.observe(lambda change: seen.append(change["new"]), names="value")
    return seen


def after_first_error(seen: list[str]) -> list[str]:
    first = next(i for i, s in enumerate(seen) if "bk-status-error" in s)
    return seen[first:]


@contextlib.asynccontextmanager
async def held_handshake() -> Any:
    """A server that answers audioConn only when told: the client stays in its handshake."""
    got_conn, release, closed = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handler(ws: Any) -> None:
        try:
            await ws.recv()
            got_conn.set()
            await release.wait()
            await ws.send(reply("audioConn", sess_id="a" * 32))
            async for _ in ws:
                pass
        finally:
            closed.set()

    async with scripted_server(handler) as url:
        try:
            yield url, got_conn, release, closed
        finally:
            release.set()  # a failing test must not leave the handler waiting (the server waits for it)


@pytest.mark.parametrize("when", ["before the task runs", "during the handshake"])
async def test_a_microphone_error_before_the_session_opens_ends_the_run_and_stays_shown(when: str) -> None:
    async with held_handshake() as (url, got_conn, release, closed):
        t = Transcriber(client=bk.Client(url, connect_retries=1))
        seen = statuses(t)
        t.start()
        if when == "during the handshake":
            await asyncio.wait_for(got_conn.wait(), 10)
        browser_says(t.source, {"type": "error", "message": "Microphone permission denied: allow the microphone"})
        await asyncio.wait_for(t.wait(), 10)
        release.set()
        if when == "before the task runs":
            assert not got_conn.is_set()  # no session was ever asked for
        # (that the abandoned handshake closes its socket is the client's cancellation, tested with it)
    assert all("permission denied" in s for s in after_first_error(seen)), seen
    assert "permission denied" in t.status.value and not t.running and not t.start_button.disabled


async def test_a_microphone_error_while_streaming_keeps_the_finals_and_the_error(energy_server) -> None:
    t = Transcriber(client=bk.Client(energy_server.url))
    seen = statuses(t)
    t.start()
    await speak(t, 0.5)
    while "streaming" not in t.status.value:
        await asyncio.sleep(0.01)
    browser_says(t.source, {"type": "error", "message": "The microphone is busy or unavailable"})
    await asyncio.wait_for(t.wait(), 10)
    assert all("busy or unavailable" in s for s in after_first_error(seen)), seen
    assert [r["text"] for r in t.finals] == ["sound 0.50 s"]  # the session drained


@pytest.mark.parametrize("how", ["close()", "last view left the page"])
async def test_closing_or_losing_the_last_view_ends_the_session(energy_server, caplog: Any, how: str) -> None:
    caplog.set_level(logging.INFO, logger="bk_notebook.server")
    before = widget_count()
    t = Transcriber(client=bk.Client(energy_server.url))
    told: list[Any] = []
    original_send = t.source.send
    t.source.send = lambda content, *a, **k: (told.append(content), original_send(content, *a, **k))  # type: ignore
    t.start()
    await speak(t, 0.7)
    while "streaming" not in t.status.value:
        await asyncio.sleep(0.01)
    if how == "close()":
        t.close()
    else:
        browser_says(t.source, {"type": "detached"})
    await asyncio.wait_for(t.wait(), 10)
    assert [r["text"] for r in t.finals] == ["sound 0.70 s"]  # drained, not dropped
    session_id = t.finals[0]["session_id"]
    assert session_id

    def server_saw_it_end() -> bool:
        return any("stopped" in r.getMessage() and session_id in r.getMessage() for r in caplog.records)

    for _ in range(500):
        if server_saw_it_end():
            break
        await asyncio.sleep(0.01)
    assert server_saw_it_end()
    if how == "close()":
        assert {"type": "stop"} in told  # the browser was told to release the microphone
        assert widget_count() == before  # all 21 widgets closed, none left behind
        with pytest.raises(bk.BkError, match="closed"):
            t.start()
    else:
        assert not t.running and not t.start_button.disabled  # ready for another run
    t.close()
    t.close()  # idempotent


async def test_rerunning_a_cell_closes_the_transcriber_it_made_before(energy_server, monkeypatch) -> None:
    from bk_notebook.widgets import cells

    cell = {"id": ("cell-1", "run-1")}
    monkeypatch.setattr(cells, "current_cell", lambda: cell["id"])
    client = bk.Client(energy_server.url)
    first, sibling = Transcriber(client), Transcriber(client)
    first.start()
    await speak(first, 0.4)
    while "streaming" not in first.status.value:  # (closed while connecting, a run is abandoned instead)
        await asyncio.sleep(0.01)
    cell["id"] = ("cell-2", "run-2")
    elsewhere = Transcriber(client)
    assert not first._closed and not sibling._closed  # another cell's Transcriber leaves them alone
    cell["id"] = ("cell-1", "run-3")  # the first cell runs again
    again = Transcriber(client)
    await asyncio.wait_for(first.wait(), 10)
    assert first._closed and sibling._closed and not again._closed and not elsewhere._closed
    assert [r["text"] for r in first.finals] == ["sound 0.40 s"]
    for t in (again, elsewhere):
        t.close()


async def test_closing_during_an_upload_ends_its_session_and_keeps_the_finals() -> None:
    import datetime
    import io

    import ipywidgets
    import soundfile as sf

    closed = asyncio.Event()

    async def stalls_after_a_final(ws: Any) -> None:  # answers 3 chunks, then never again
        chunks = 0
        try:
            async for raw in ws:
                kind = json.loads(raw)["bk"]["type"]
                if kind == "audioConn":
                    await ws.send(reply("audioConn", sess_id="b" * 32))
                elif kind == "audioStream" and chunks < 3:
                    chunks += 1
                    await ws.send(reply("audioStream", final="first words", start=0.0, end=0.3) if chunks == 3
                                  else reply("audioStream", partial="first"))
        finally:
            closed.set()

    async with scripted_server(stalls_after_a_final) as url:
        upload = ipywidgets.FileUpload(accept="audio/*")
        t = Transcriber(client=bk.Client(url), source=upload)
        got_final = asyncio.Event()
        t.table.observe(lambda _: got_final.set() if t.finals else None, names="value")
        buffer = io.BytesIO()
        sf.write(buffer, np.frombuffer(b"".join(tone_chunks(0.5) * 40), "<i2"), 16000, format="WAV")
        data = buffer.getvalue()
        upload.value = ({"name": "long.wav", "type": "audio/wav", "size": len(data), "content": memoryview(data),
                         "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
        await asyncio.wait_for(got_final.wait(), 30)  # the session is open, mid-file
        t.close()
        await asyncio.wait_for(t.wait(), 10)
        await asyncio.wait_for(closed.wait(), 10)  # the server saw the session's connection end
    assert [r["text"] for r in t.finals] == ["first words"]  # what arrived before the close is kept
    assert "stopped" in t.status.value and not t.running


async def test_an_incomplete_run_says_so_in_the_status() -> None:
    async def never_answers_stop(ws: Any) -> None:
        async for raw in ws:
            kind = json.loads(raw)["bk"]["type"]
            if kind == "audioConn":
                await ws.send(reply("audioConn", sess_id="c" * 32))
            elif kind == "audioStream":
                await ws.send(reply("audioStream", final="heard", start=0.0, end=0.1))

    async with scripted_server(never_answers_stop) as url:
        t = Transcriber(client=bk.Client(url, drain_timeout=0.3), source=__import__("ipywidgets").FileUpload())
        t._in_loop(t._spawn_file, open(bk.sample_path(), "rb").read())
        await asyncio.sleep(0.05)
        await asyncio.wait_for(t.wait(), 30)
    assert "status: incomplete" in t.status.value and "1 final," not in t.status.value
    assert "audioStop" in t.status.value and t.finals


async def test_closed_widgets_are_freed_with_their_audio_and_callbacks(energy_server) -> None:
    import gc
    import weakref

    from bk_notebook.widgets import Player

    minutes = 10
    noise = np.random.default_rng(0).integers(-3000, 3000, 16000 * 60 * minutes, dtype=np.int16)
    player = Player([{"text": "a", "start": 0.0, "end": 1.0}], noise, sr=16000)
    assert len(player.encoded[0]) > 1_000_000  # the encoded copy the browser asked for is cached
    mic = Microphone()
    seen: list[bytes] = []
    mic.on_chunk(seen.append)
    browser_says(mic, {"type": "started", "sample_rate": 44100})
    browser_says(mic, {"type": "chunk", "seq": 0}, [tone_chunks(0.1)[0]])
    transcriber = Transcriber(client=bk.Client(energy_server.url))
    transcriber.start()
    await speak(transcriber, 0.3)
    await press_stop(transcriber)
    assert seen and transcriber.finals
    refs = [weakref.ref(w) for w in (player, mic, transcriber, transcriber.source)]
    player.close()
    assert player._encoded is None and player._pcm.size == 0  # dropped at close, before the last reference goes
    mic.close()
    assert mic._chunks == [] and mic._chunk_callbacks == []
    transcriber.close()
    del player, mic, transcriber
    gc.collect()
    assert [r() for r in refs] == [None] * 4  # nothing (a class-level file watcher, a callback) keeps them


# ------------------------------------------------------- the run's state machine
from bk_notebook.errors import StateError  # noqa: E402
from bk_notebook.widgets.run import TRANSITIONS, Run, RunState, check_step  # noqa: E402

S = RunState
# Every way a run goes, as the Transcriber takes it (see _session, _end_run_early, start).
RUN_PATHS = {
    "done or incomplete": [S.IDLE, S.STARTING, S.CONNECTING, S.STREAMING, S.DRAINING, S.IDLE],
    "the source cannot start": [S.IDLE, S.STARTING, S.IDLE],
    "ended before its task ran": [S.IDLE, S.STARTING, S.IDLE],
    "refused, abandoned, or the source failed first": [S.IDLE, S.STARTING, S.CONNECTING, S.IDLE],
    "lost while streaming, or a file's run closed": [S.IDLE, S.STARTING, S.CONNECTING, S.STREAMING, S.IDLE],
}


@pytest.mark.pure
@pytest.mark.parametrize("path", RUN_PATHS.values(), ids=RUN_PATHS.keys())
def test_every_way_a_run_goes_is_in_the_table(path: list[RunState]) -> None:
    for old, new in itertools.pairwise(path):
        assert check_step(old, new) is new


@pytest.mark.pure
@pytest.mark.parametrize(("old", "new"), [
    (S.IDLE, S.IDLE),  # a run ended twice
    (S.IDLE, S.STREAMING), (S.IDLE, S.CONNECTING),  # a session without a run
    (S.STARTING, S.STREAMING),  # open without connecting
    (S.STREAMING, S.CONNECTING), (S.DRAINING, S.STREAMING),  # backwards
    (S.STARTING, S.STARTING), (S.DRAINING, S.DRAINING),
])
def test_a_step_the_table_does_not_hold_raises_one_error_naming_both_states(old: RunState, new: RunState) -> None:
    with pytest.raises(StateError, match=f"from {old.value} to {new.value}"):
        check_step(old, new)


@pytest.mark.pure
def test_the_table_has_no_dead_end_every_state_is_reached_and_each_returns_to_idle() -> None:
    reached, todo = {S.IDLE}, [S.IDLE]
    while todo:
        for new in TRANSITIONS[todo.pop()] - reached:
            reached.add(new)
            todo.append(new)
    assert reached == set(RunState) and set(TRANSITIONS) == set(RunState)
    assert all(S.IDLE in TRANSITIONS[state] for state in RunState if state not in (S.IDLE,))


async def test_a_run_shows_each_of_its_states_in_order_then_its_outcome(energy_server) -> None:
    t = Transcriber(client=bk.Client(energy_server.url))
    shown: list[str] = []
    # a trait fires on change only: "connecting" (Start, then the session's task) is shown once
    t.status.observe(lambda change: shown.append(change["new"].split("status: ")[1].split("<")[0]), names="value")
    t.start()
    assert t.running
    await speak(t, 1.0)
    await press_stop(t)
    assert not t.running
    assert shown == ["connecting", "streaming", "draining", "done: 1 final, 2.0 s of audio"]


@pytest.mark.pure
async def test_each_run_starts_from_nothing_and_its_stop_timer_is_cancelled_once() -> None:
    first, second = Run(), Run()
    assert (first.queue, first.task, first.stop_timer, first.audio) == (None, None, None, None)
    assert (first.source_error, first.dropped_seconds, first.finals) == ("", 0.0, [])
    assert first.finals is not second.finals and first.finished is not second.finished
    assert not first.finished.is_set()  # a new run is not over
    fired: list[int] = []
    first.stop_timer = asyncio.get_running_loop().call_later(0, fired.append, 1)
    timer = first.stop_timer
    first.cancel_stop_timer()
    assert timer.cancelled() and first.stop_timer is None
    first.cancel_stop_timer()  # nothing left to cancel
    await asyncio.sleep(0)
    assert fired == []
