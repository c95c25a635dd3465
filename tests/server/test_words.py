"""Every word with its time: the ``words`` of a final, from the engines through the protocol to the exports.

The protocol and Transcript tests feed strings and records; the engine tests go through the real local
server and the project's client (PocketSphinx and the energy engine here, Whisper in ``test_vocabulary``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import bk_notebook as bk
from bk_notebook.batch.checkpoint import record_of, transcript_of
from bk_notebook.protocol import ClientProtocol, Final, ServerProtocol, WordTiming

from helpers import require


# ------------------------------------------------------------------------------ helpers
def streaming_client() -> ClientProtocol:
    client = ClientProtocol()
    client.connect()
    client.receive(ServerProtocol(lambda: "s1").accept())
    return client


def check_words_fit_their_finals(transcript: bk.Transcript) -> None:
    """What a user relies on: each word inside its final's span, in order, covering it, spelling the final."""
    for record in transcript.finals:
        words = [w for w in transcript.words if w.segment == record["segment"]]
        assert words, record
        assert " ".join(w.text for w in words) == record["text"]
        for word in words:
            assert record["start"] <= word.start <= word.end <= record["end"], (word, record)
            assert word.probability is None or 0.0 <= word.probability <= 1.0
        starts = [w.start for w in words]
        assert starts == sorted(starts), starts
        for word, following in zip(words[:-1], words[1:], strict=True):  # a word ends as the next begins
            assert word.end <= following.start + 0.01, (word, following)
        # and they cover it: times that collapsed onto one edge would still be "inside" (1 s: the
        # recognisers' silence at each end of an utterance)
        assert words[0].start - record["start"] < 1.0 and record["end"] - words[-1].end < 1.0, (words, record)
        spoken = sum(w.end - w.start for w in words)  # the words take up the final, pauses aside
        assert spoken >= 0.5 * (record["end"] - record["start"]), (spoken, words, record)


def transcript_with_words() -> bk.Transcript:
    t = bk.Transcript(session_id="s1")
    t.add_final("hello world", 0.5, 1.5, sent=2.0,
                words=[WordTiming("hello", 0.5, 0.9, 0.91), WordTiming("world", 1.0, 1.5, 0.42)])
    t.add_final("no words here", 2.0, 3.0, sent=3.0)
    t.add_final("good morning", 3.25, 4.0, sent=4.0, language="en",
                words=[WordTiming("good", 3.25, 3.5, None), WordTiming("morning", 3.5, 4.0, 0.8)])
    return t


# ------------------------------------------------------------------------------ protocol
def test_a_finals_words_cross_the_wire_and_come_back_as_typed_words() -> None:
    words = (WordTiming("halo", 0.12345, 0.5, 0.98765), WordTiming("dunia", 0.5, 1.0, None))
    text = ServerProtocol.final("halo dunia", 0.1, 1.0, "id", words)
    assert json.loads(text)["bk"]["data"]["words"] == [
        {"word": "halo", "start": 0.123, "end": 0.5, "probability": 0.988},
        {"word": "dunia", "start": 0.5, "end": 1.0, "probability": None},
    ]
    [final] = streaming_client().receive(text)
    assert final == Final("halo dunia", 0.1, 1.0, "id",
                          (WordTiming("halo", 0.123, 0.5, 0.988), WordTiming("dunia", 0.5, 1.0, None)))


def test_a_final_without_words_has_none_and_sends_no_key() -> None:
    text = ServerProtocol.final("hello", 0.0, 1.0)
    assert "words" not in json.loads(text)["bk"]["data"]
    [final] = streaming_client().receive(text)
    assert final.words == ()


@pytest.mark.parametrize("words, kept", [
    ("not a list", 0),
    ([{"word": "ok", "start": 0, "end": 1}], 1),  # probability is optional
    ([{"word": "ok", "start": 0, "end": 1, "probability": 0.5}, {"word": 3, "start": 0, "end": 1}], 1),
    ([{"word": "a", "start": "x", "end": 1}, {"word": "b", "end": 1}, "c", None], 0),
])
def test_malformed_words_are_skipped_and_the_final_kept(words: Any, kept: int) -> None:
    reply = json.dumps({"bk": {"service": "stt", "type": "audioStream", "status": 200,
                               "data": {"final": "ok", "start": 0, "end": 1, "words": words}}})
    [final] = streaming_client().receive(reply)
    assert final.text == "ok" and len(final.words) == kept


# ------------------------------------------------------------------------------ Transcript
# These need no server: marked pure, mutation testing runs them (TESTING.md).
@pytest.mark.pure
def test_transcript_words_carry_their_segment_and_are_empty_without_any() -> None:
    t = transcript_with_words()
    assert t.words == [bk.Word("hello", 0.5, 0.9, 0.91, 0), bk.Word("world", 1.0, 1.5, 0.42, 0),
                       bk.Word("good", 3.25, 3.5, None, 2), bk.Word("morning", 3.5, 4.0, 0.8, 2)]
    plain = bk.Transcript()
    plain.add_final("hello", 0.0, 1.0, sent=1.0)
    assert plain.words == [] and "words" not in plain.finals[0]


@pytest.mark.pure
def test_word_level_frame_and_the_default_frame_unchanged() -> None:
    require("pandas", "DataFrames")
    t = transcript_with_words()
    words = t.to_dataframe(level="word")
    assert list(words.columns) == ["segment", "word", "start", "end", "probability"]
    assert words["word"].tolist() == ["hello", "world", "good", "morning"]
    assert words["segment"].tolist() == [0, 0, 2, 2]
    assert words["start"].tolist() == [0.5, 1.0, 3.25, 3.5]
    frame = t.to_dataframe()
    assert list(frame.columns) == ["segment", "text", "start", "end", "session_id", "language"]
    assert frame.equals(t.to_dataframe(level="segment"))
    empty = bk.Transcript().to_dataframe(level="word")
    assert list(empty.columns) == ["segment", "word", "start", "end", "probability"] and len(empty) == 0
    with pytest.raises(bk.UsageError, match="level"):
        t.to_dataframe(level="words")


@pytest.mark.pure
def test_jsonl_and_the_checkpoint_keep_the_words() -> None:
    t = transcript_with_words()
    lines = [json.loads(line) for line in t.to_jsonl().splitlines()]
    assert lines[0]["words"][1] == {"word": "world", "start": 1.0, "end": 1.5, "probability": 0.42}
    assert "words" not in lines[1]
    back = transcript_of(json.loads(json.dumps(record_of("k", t))))
    assert back.words == t.words
    copy = t.records()
    copy[0]["words"][0]["word"] = "changed"  # records() are copies, words included
    assert t.words[0].text == "hello"


@pytest.mark.pure
def test_vtt_carries_word_timings_only_when_asked() -> None:
    t = transcript_with_words()
    assert "<" not in t.to_vtt()
    vtt = t.to_vtt(words=True)
    assert "00:00:00.500 --> 00:00:01.500\nhello <00:00:01.000>world\n" in vtt
    assert "00:00:02.000 --> 00:00:03.000\nno words here\n" in vtt
    assert "00:00:03.250 --> 00:00:04.000\ngood <00:00:03.500>morning\n" in vtt


@pytest.mark.pure
def test_vtt_word_timestamps_stay_inside_the_cue_and_never_go_back() -> None:
    t = bk.Transcript()
    t.add_final("a b c", 1.0, 2.0, sent=2.0,
                words=[WordTiming("a", 1.0, 1.2), WordTiming("b", 0.8, 1.0), WordTiming("c", 2.5, 2.6)])
    cue = t.to_vtt(words=True).split("\n")[3]
    stamps = re.findall(r"<(\d\d:\d\d:\d\d\.\d{3})>", cue)
    assert stamps == ["00:00:01.000", "00:00:02.000"], cue


@pytest.mark.pure
def test_joined_transcripts_renumber_the_words_segments() -> None:
    joined = bk.Transcript.join([transcript_with_words(), transcript_with_words()])
    assert [w.segment for w in joined.words] == [0, 0, 2, 2, 3, 3, 5, 5]


# ------------------------------------------------------------------------------ through the server
async def test_pocketsphinx_finals_carry_words_that_fit_them(sphinx_server: Any) -> None:
    client = bk.Client(sphinx_server.url)
    transcript = await client.transcribe(bk.sample_path(), speed=None)
    assert transcript.complete and len(transcript.finals) >= 2
    check_words_fit_their_finals(transcript)
    require("pandas", "DataFrames")
    assert transcript.to_dataframe(level="word")["word"].tolist() == [w.text for w in transcript.words]
    assert {"world", "speech", "recognition", "sunny", "warm"} <= {w.text for w in transcript.words}  # content words


async def test_the_energy_engine_sends_no_words_and_the_client_is_fine(energy_server: Any) -> None:
    transcript = await bk.Client(energy_server.url).transcribe(bk.sample_path(), speed=None)
    assert transcript.complete and transcript.finals
    assert transcript.words == [] and all("words" not in r for r in transcript.finals)
    assert "<" not in transcript.to_vtt(words=True)


async def test_a_resumed_session_moves_its_words_onto_the_transcripts_clock() -> None:
    """Word times are shifted by the session's offset exactly as the final's own times are."""
    from bk_notebook.client.settings import ClientSettings
    from bk_notebook.client.stream import Stream

    stream = Stream(ClientSettings(url="ws://127.0.0.1:1/v1/prod/stream"), speed=None, on_partial=None,
                    on_final=None)
    stream._offset = 32000 * 10  # as after a resumption 10 s into the audio
    words = (WordTiming("hi", 0.5, 0.9), WordTiming("there", 1.0, 1.5))
    await stream._dispatch(Final("hi there", 0.5, 1.5, None, words))
    assert stream.transcript.finals[0]["start"] == 10.5
    assert [(w.start, w.end) for w in stream.transcript.words] == [(10.5, 10.9), (11.0, 11.5)]
