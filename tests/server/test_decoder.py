"""The shared decoder: batching, finals first, packing, speculation and admission, with a model-free decoder.

The model is replaced by a decode function whose text says which audio it was given (its length), and
whose cost is a fixed wait: batching, order and admission are then deterministic.  Whisper's own words
through these paths are in ``test_whisper.py`` (slow-marked).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import bk_notebook as bk
from bk_notebook.protocol import SAMPLE_RATE, Final
from bk_notebook.server.engines import decoder as decoding
from bk_notebook.server.engines.decoder import Decoded, Decoder, Priority, Window, encoder_input, next_batch
from bk_notebook.server.engines.packing import Pack, Piece, split_by_timestamps
from bk_notebook.server.turns import Load

from helpers import FIXTURES, require


def window(seconds: float = 1.0, priority: Priority = Priority.FINAL) -> Window:
    return Window(np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32), ("en",), 10, priority)


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


# ------------------------------------------------------------------ batching and order
def test_windows_waiting_while_a_batch_runs_are_decoded_together_finals_first() -> None:
    release = threading.Event()
    batches: list[list[str]] = []

    def decode(windows: list[Window]) -> list[Decoded]:
        batches.append([w.languages[0] for w in windows])
        if len(batches) == 1:
            release.wait(10)  # the first batch runs while the others arrive
        return [Decoded((w.languages[0],), "en") for w in windows]

    decoder = Decoder(decode, batch_size=3, gather=0.0)
    first = decoder.submit(Window(np.zeros(16000, np.float32), ("first",), 10))
    wait_for(lambda: batches)
    names = [("a-partial", Priority.PARTIAL), ("b-partial", Priority.PARTIAL), ("c-final", Priority.FINAL),
             ("d-pack", Priority.PACK), ("e-final", Priority.FINAL)]
    futures = [decoder.submit(Window(np.zeros(16000, np.float32), (n,), 10, p)) for n, p in names]
    release.set()
    assert first.result(10).texts == ("first",)
    assert [f.result(10).texts[0] for f in futures] == [n for n, _ in names]  # each caller gets its own result
    assert batches == [["first"], ["c-final", "e-final", "d-pack"], ["a-partial", "b-partial"]]


@pytest.mark.pure
def test_one_call_takes_the_longest_encoder_input_its_windows_ask_for() -> None:
    short, full = window(), window()
    short.encoder_frames, full.encoder_frames = 1000, 3000
    assert encoder_input([short], [300]) == 1000  # 3 s of audio in a 10 s input
    assert encoder_input([short], [1250]) == 1350  # longer audio: the audio and a second
    assert encoder_input([short], [2950]) == 3000  # never past Whisper's 30 s
    assert encoder_input([short, full], [300, 300]) == 3000  # one input per call: the longest asked for


def test_a_lone_window_waits_a_few_ms_for_company() -> None:
    batches: list[int] = []

    def decode(windows: list[Window]) -> list[Decoded]:
        batches.append(len(windows))
        return [Decoded(("",), "en") for _ in windows]

    decoder = Decoder(decode, batch_size=4, gather=0.5)  # long enough that the second arrives within it
    futures = [decoder.submit(window())]
    futures.append(decoder.submit(window()))
    for f in futures:
        f.result(10)
    assert batches == [2]


@pytest.mark.pure
def test_next_batch_takes_the_most_urgent_in_arrival_order() -> None:
    windows = [window(priority=p) for p in (Priority.PARTIAL, Priority.PACK, Priority.FINAL, Priority.FINAL)]
    for i, w in enumerate(windows):
        w.arrival = i
    assert next_batch(windows, 3) == [windows[2], windows[3], windows[1]]
    assert next_batch(windows, 1) == [windows[2]]


def test_a_window_cancelled_before_its_batch_is_never_decoded() -> None:
    release = threading.Event()
    seen: list[float] = []

    def decode(windows: list[Window]) -> list[Decoded]:
        seen.extend(w.seconds for w in windows)
        release.wait(10)
        return [Decoded(("x",), "en") for _ in windows]

    decoder = Decoder(decode, batch_size=4, gather=0.0)
    running = decoder.submit(window(1.0))
    wait_for(lambda: seen)
    dropped, kept = decoder.submit(window(2.0)), decoder.submit(window(3.0))
    assert dropped.cancel()
    release.set()
    assert kept.result(10).texts == ("x",) and running.result(10).texts == ("x",)
    assert seen == [1.0, 3.0]


def test_an_error_in_a_batch_reaches_every_caller_and_the_decoder_goes_on() -> None:
    calls = []

    def decode(windows: list[Window]) -> list[Decoded]:
        calls.append(len(windows))
        if len(calls) == 1:
            raise RuntimeError("model failed")
        return [Decoded(("ok",), "en") for _ in windows]

    decoder = Decoder(decode, gather=0.0)
    with pytest.raises(RuntimeError, match="model failed"):
        decoder.decode(window())
    assert decoder.decode(window()).texts == ("ok",)


# ------------------------------------------------------------------ what the decoder measures
def test_busy_is_the_share_of_the_last_ten_seconds_spent_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(decoding.time, "monotonic", lambda: clock[0])

    def decode(windows: list[Window]) -> list[Decoded]:
        clock[0] = 104.0  # a 4-second decode
        return [Decoded(("",), "en") for _ in windows]

    decoder = Decoder(decode, gather=0.0)
    assert decoder.busy() == 0
    decoder.decode(window())
    wait_for(lambda: decoder._recent)
    clock[0] = 105.0
    assert decoder.busy() == pytest.approx(0.4)
    clock[0] = 112.0  # 2 of its 4 seconds are still in the window
    assert decoder.busy() == pytest.approx(0.2)
    clock[0] = 115.0
    assert decoder.busy() == 0


def test_throughput_counts_finalised_audio_per_second_and_partials_only_in_part(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(decoding.time, "monotonic", lambda: clock[0])

    def decode(windows: list[Window]) -> list[Decoded]:
        clock[0] += 1.0  # every batch costs one second, whatever is in it
        return [Decoded(("",), "en") for _ in windows]

    decoder = Decoder(decode, batch_size=8, gather=0.0)
    assert decoder.throughput() is None
    decoder.decode(window(3.0))  # 3 s finalised in 1 s
    wait_for(lambda: len(decoder._recent) == 1)
    assert decoder.throughput() is None or decoder.throughput() == pytest.approx(3.0)
    decoder.decode(window(0.5, Priority.PARTIAL))  # a partial: time spent, nothing finalised, not counted
    wait_for(lambda: len(decoder._recent) == 2)
    assert decoder.throughput() == pytest.approx(3.0)
    clock[0] += 40  # older than the measuring window: unknown again
    assert decoder.throughput() is None


# ------------------------------------------------------------------ packing (pure)
@pytest.mark.pure
def test_a_packed_window_is_split_back_by_the_middle_of_each_timed_segment() -> None:
    begin = 1000  # timestamp tokens: begin + seconds / 0.02

    def ts(seconds: float) -> int:
        return begin + round(seconds / 0.02)

    bounds = [2.0, 5.0, 6.0]  # three pieces: 0-2 s, 2-5 s, 5-6 s
    tokens = [ts(0.1), 1, 2, ts(1.9), ts(2.2), 3, ts(4.8), ts(5.1), 4, 5]  # the last segment has no end mark
    assert split_by_timestamps(tokens, begin, bounds) == [[1, 2], [3], [4, 5]]
    # A segment running over a boundary goes to the piece holding its middle; a piece may get nothing.
    assert split_by_timestamps([ts(0.5), 7, ts(4.5)], begin, bounds) == [[], [7], []]
    assert split_by_timestamps([ts(1.0), 7, ts(2.6), ts(5.2), 8, ts(5.8)], begin, bounds) == [[7], [], [8]]
    assert split_by_timestamps([7, 8], begin, [3.0]) == [[7, 8]]  # no timestamps at all: one piece
    assert split_by_timestamps([7, ts(1.0)], begin, [0.8, 2.0]) == [[7], []]  # no opening mark: from 0.0
    assert split_by_timestamps([ts(5.5), 9, ts(7.0)], begin, bounds) == [[], [], [9]]  # past the end: the last
    assert split_by_timestamps([begin, 7, ts(1.0)], begin, bounds) == [[7], [], []]  # <|0.00|> is a mark
    assert split_by_timestamps([], begin, []) == []


@pytest.mark.pure
def test_a_pack_holds_pieces_up_to_its_limit() -> None:
    pack = Pack(limit=10)
    piece = Piece(np.zeros(6, np.float32), 0.0, 1.0)
    assert pack.fits(piece)
    pack.pieces.append(piece)
    assert not pack.fits(Piece(np.zeros(5, np.float32), 1.0, 2.0)) and pack.fits(Piece(np.zeros(4, np.float32), 1, 2))
    pack.pieces.append(Piece(np.ones(4, np.float32), 1.0, 2.0))
    assert pack.bounds(2) == [3.0, 5.0] and pack.audio().tolist() == [0.0] * 6 + [1.0] * 4
    assert Pack(limit=1).fits(piece)  # an empty pack takes a piece longer than its limit (a forced cut's)


# ------------------------------------------------------------------ the engine on a model-free decoder
class FakeShared:
    """Stands for a SharedModel: texts say how long each piece was; each batch costs ``cost`` seconds."""

    multilingual = False

    def __init__(self, cost: float = 0.0) -> None:
        self.cost = cost
        self.skip_second = False
        self.decoder = Decoder(self.decode_batch, gather=0.001)
        self.windows: list[Window] = []  # decoded
        self.submitted: list[Window] = []  # handed to the decoder (some are dropped before their batch)
        submit = self.decoder.submit

        def logged(window: Window) -> Any:
            self.submitted.append(window)
            return submit(window)

        self.decoder.submit = logged  # type: ignore[method-assign]

    def decode_batch(self, windows: list[Window]) -> list[Decoded]:
        time.sleep(self.cost)
        self.windows.extend(windows)
        results = []
        for w in windows:
            if w.bounds is None:
                results.append(Decoded((f"said {w.seconds:.2f}",), "en"))
            else:
                starts = [0.0, *w.bounds[:-1]]
                texts = [f"said {b - a:.2f}" for a, b in zip(starts, w.bounds, strict=True)]
                if self.skip_second:
                    texts[1] = ""  # Whisper skips an utterance of the window now and then
                results.append(Decoded(tuple(texts), "en"))
        return results


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeShared]:
    require("faster_whisper", "the whisper engine's VAD")
    shared = FakeShared()
    monkeypatch.setitem(decoding._shared, "fake", shared)
    yield shared


def speech(seconds_of_pause: float) -> bytes:
    """Two sentences of the fixtures with a pause between them, and a second of silence after."""
    first = bk.to_pcm16(FIXTURES / "sentences" / "s05.flac")
    second = bk.to_pcm16(FIXTURES / "sentences" / "s06.flac")
    pause = np.zeros(int(seconds_of_pause * SAMPLE_RATE), np.int16)
    return np.concatenate([first, pause, second, np.zeros(SAMPLE_RATE, np.int16)]).tobytes()


def run_live(engine: Any, pcm: bytes) -> list[Any]:
    """Feed at real time as the engine sees it (its wall clock kept level with the audio)."""
    events: list[Any] = []
    for i in range(0, len(pcm), 3200):
        engine._wall_start = time.monotonic() - (i + 3200) / 2 / SAMPLE_RATE
        events += engine.feed(pcm[i:i + 3200])
    return events + engine.flush()


def test_speculation_never_emits_a_final_for_speech_that_resumed(fake_model: FakeShared) -> None:
    from bk_notebook.server.engines.whisper import WhisperEngine

    engine = WhisperEngine(model="fake", language="en", partials=False, silence=1.5, speculate=0.2)
    pcm = speech(0.0)  # the fixtures' own silences: about 1 s between the sentences, less than 1.5 s
    finals = [e for e in run_live(engine, pcm) if isinstance(e, Final)]
    assert len(finals) == 1, finals  # one utterance: both sentences
    speculated = [w for w in fake_model.submitted if w.seconds < finals[0].end - finals[0].start]
    assert speculated, "the pause started a speculative decode"
    decoded_seconds = float(finals[0].text.split()[1])
    assert decoded_seconds > finals[0].end - finals[0].start  # the whole utterance's decode, not the guess
    assert finals[0].end - finals[0].start > 4.0, finals


def test_a_speculative_decode_is_the_final_when_the_silence_lasts(fake_model: FakeShared) -> None:
    from bk_notebook.server.engines.whisper import WhisperEngine

    for speculate in (0.2, None):
        fake_model.windows.clear()
        engine = WhisperEngine(model="fake", language="en", partials=False, silence=0.5, speculate=speculate)
        finals = [e for e in run_live(engine, speech(1.5)) if isinstance(e, Final)]
        assert len(finals) == 2 and finals[0].end <= finals[1].start, finals
        assert len(fake_model.windows) == 2  # one decode per final: the speculative one was used
        # The speculative window ends 0.2 s into the silence (padding 0.3 s otherwise, the silence 0.5 s).
        pad = 0.2 if speculate else 0.3
        assert all(f.text == f"said {w.seconds:.2f}" for f, w in zip(finals, fake_model.windows, strict=True))
        assert fake_model.windows[0].seconds == pytest.approx(finals[0].end - finals[0].start + 0.3 + pad, abs=0.04)
        assert {w.encoder_frames for w in fake_model.windows} == {1000}  # a live final: the short encoder input


def test_a_file_is_packed_and_every_utterance_keeps_its_own_final_in_order(fake_model: FakeShared,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from bk_notebook.server.engines import whisper
    from bk_notebook.server.engines.whisper import WhisperEngine

    pcm = speech(1.5) * 12  # 24 sentences, over 50 s of padded speech: more than one full pack
    live = [e for e in run_live(WhisperEngine(model="fake", language="en", partials=False, speculate=None), pcm)
            if isinstance(e, Final)]
    singles = len(fake_model.windows)
    fake_model.windows.clear()
    monkeypatch.setattr(whisper, "FILE_AHEAD", -1e9)  # a file from its first chunk, however slow the machine
    fake_model.cost = 0.5  # each decode takes a while: the utterances cut meanwhile fill the next pack
    engine = WhisperEngine(model="fake", language="en", partials=False)
    events = [e for i in range(0, len(pcm), 3200) for e in engine.feed(pcm[i:i + 3200])] + engine.flush()
    finals = [e for e in events if isinstance(e, Final)]
    assert [(f.start, f.end) for f in finals] == [(f.start, f.end) for f in live]  # the VAD's own times
    assert all(a.end <= b.start for a, b in zip(finals, finals[1:], strict=False))
    assert singles == 24 and len(fake_model.windows) < 8  # fewer, longer windows
    assert any(w.bounds is not None and len(w.bounds) > 2 for w in fake_model.windows)
    assert all(w.seconds <= 28.0 for w in fake_model.windows)
    assert {w.encoder_frames for w in fake_model.windows if w.bounds is not None} == {3000}  # packs: the full window
    # Each final is its own piece's text: the piece's length, padding included.
    assert [f.text for f in finals] == [f.text for f in live]
    # An utterance the packed decode skipped is decoded alone: none is lost.
    fake_model.skip_second = True
    engine = WhisperEngine(model="fake", language="en", partials=False)
    events = [e for i in range(0, len(pcm), 3200) for e in engine.feed(pcm[i:i + 3200])] + engine.flush()
    assert [e.text for e in events if isinstance(e, Final)] == [f.text for f in live]


# ------------------------------------------------------------------ admission from the decoder's throughput
@pytest.mark.pure
def test_load_takes_the_shared_decoders_cost_against_one_slot() -> None:
    class Measured:
        value: float | None = None

        def throughput(self) -> float | None:
            return self.value

    decoder = Measured()
    load = Load(slots=2, decoder=decoder)
    load.decoded(1.0, 0.01)  # what engine calls that ran alone said: nearly free
    for name in ("a", "b"):
        load.opened(name, 0.0)  # young sessions count as real time
    assert load.cost == pytest.approx(0.01) and load.slots == 2 and load.admits(1.0)
    decoder.value = 2.5  # the decoder finalises 2.5 s of audio per second: 0.4 s of work per second of audio
    assert load.cost == pytest.approx(0.4) and load.slots == 1
    assert load.live_demand(1.0) == pytest.approx(0.8)
    assert not load.admits(1.0)  # 0.8 + 0.4 > 0.85 of the one decoder
    load.closed("b")
    assert load.admits(1.0)  # 0.4 + 0.4 <= 0.85


async def test_admission_refuses_the_session_that_would_overload_the_decoder_and_admits_it_later(
        fake_model: FakeShared) -> None:
    """Through the real server: a decoder measured at 2.5 audio seconds per second holds two live sessions."""
    fake_model.cost = 0.4
    for _ in range(3):  # 1 s of audio per 0.4 s batch: 2.5 s/s, measured over more than a second of work
        fake_model.decoder.decode(window(1.0))
    assert fake_model.decoder.throughput() == pytest.approx(2.5, rel=0.2)
    async with bk.local_server(engine="whisper", model="fake", language="en", workers=8) as server:
        first, second = bk.Client(server.url).stream(), bk.Client(server.url).stream()
        await first.__aenter__()
        await second.__aenter__()
        with pytest.raises(bk.WorkerUnavailable):  # 3 x 0.4 > 0.85 of the one decoder; 8 workers are free
            await bk.Client(server.url, connect_retries=1).stream().__aenter__()
        await second.stop()
        third = bk.Client(server.url, connect_retries=1).stream()
        await third.__aenter__()  # room again once one ended
        await first.stop()
        await third.stop()
