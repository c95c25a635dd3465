from __future__ import annotations

import json
import sys
from typing import Any

import pytest

import bk_notebook as bk
from bk_notebook.transcript import Transcript, finals_table_html

from helpers import require

pytestmark = pytest.mark.pure  # the tests mutation testing runs (TESTING.md)


def sample() -> bk.Transcript:
    t = bk.Transcript(session_id="s1", duration=4.0)
    t.add_final("hello world", 0.3, 1.5, sent=2.0)
    t.add_final("second <part>", None, None, sent=3.25)
    return t


def test_records_are_dataframe_ready_and_estimated_times_are_marked() -> None:
    t = sample()
    assert t.finals[0] == {"segment": 0, "text": "hello world", "start": 0.3, "end": 1.5, "session_id": "s1"}
    assert t.finals[1] == {"segment": 1, "text": "second <part>", "start": 1.5, "end": 3.25,
                           "session_id": "s1", "timing": "estimated"}
    assert t.text == "hello world second <part>"
    records = t.records()
    records[0]["text"] = "changed"
    assert t.finals[0]["text"] == "hello world"  # a copy


def test_to_dataframe() -> None:
    df = sample().to_dataframe()
    assert list(df.columns) == ["segment", "text", "start", "end", "session_id", "timing"]
    assert df["end"].tolist() == [1.5, 3.25]
    empty = bk.Transcript().to_dataframe()
    assert len(empty) == 0 and "text" in empty.columns


def test_subtitles() -> None:
    t = sample()
    assert t.to_srt() == (
        "1\n00:00:00,300 --> 00:00:01,500\nhello world\n\n"
        "2\n00:00:01,500 --> 00:00:03,250\nsecond <part>\n"
    )
    assert t.to_vtt().startswith("WEBVTT\n\n00:00:00.300 --> 00:00:01.500\nhello world\n")


def test_csv_jsonl_and_reprs() -> None:
    t = sample()
    assert t.to_csv().splitlines()[0] == "segment,text,start,end,session_id,timing"
    served = bk.Transcript(finals=[r for r in t.finals if "timing" not in r])
    assert served.to_csv().splitlines()[0] == "segment,text,start,end,session_id"  # no empty column
    assert [json.loads(line)["text"] for line in t.to_jsonl().splitlines()] == ["hello world", "second <part>"]
    assert "2 finals" in repr(t) and "hello world" in repr(t)
    assert "second &lt;part&gt;" in t._repr_html_()


def test_subtitle_clocks_past_six_minutes_and_past_an_hour() -> None:
    t = Transcript(finals=[
        {"segment": 0, "text": "six minutes in", "start": 366.5, "end": 371.25, "session_id": "s"},
        {"segment": 1, "text": "an hour in", "start": 3725.042, "end": 7384.999, "session_id": "s"},
    ])
    assert "00:06:06,500 --> 00:06:11,250" in t.to_srt()
    assert "01:02:05,042 --> 02:03:04,999" in t.to_srt()
    assert "01:02:05.042 --> 02:03:04.999" in t.to_vtt()


def test_complete_is_false_until_a_session_says_so_and_joins_keep_it_honest() -> None:
    done, cut = Transcript(complete=True), Transcript(gaps=[(1.0, 2.5)])
    assert not Transcript().complete and "INCOMPLETE" in repr(Transcript())
    assert Transcript.join([done, done]).complete
    joined = Transcript.join([done, cut])
    assert not joined.complete and joined.gaps == [(1.0, 2.5)] and "1.5 s" in joined.incomplete_reason
    assert not Transcript.join([]).complete


def test_a_final_with_one_time_missing_is_estimated_from_the_previous_end() -> None:
    t = Transcript(session_id="s")
    first = t.add_final("first", None, 1.0, sent=1.23456)  # the first: from 0, to what was sent
    assert (first["start"], first["end"], first["timing"]) == (0.0, 1.235, "estimated")
    second = t.add_final("second", 2.0, None, sent=0.5)  # never before the previous end
    assert (second["start"], second["end"], second["timing"]) == (1.235, 1.235, "estimated")
    t.finals[-1]["end"] = 1.23456
    assert t.add_final("third", None, None, sent=2.00049)["start"] == 1.235  # to the millisecond


def test_exports_hold_every_final_and_keep_non_ascii_text() -> None:
    t = Transcript(finals=[
        {"segment": 0, "text": "café", "start": 0.0, "end": 1.0, "session_id": "s", "speaker": "A"},
        {"segment": 1, "text": "naïve", "start": 1.0, "end": 2.0, "session_id": "s"},
    ])
    assert t.to_jsonl() == (
        '{"segment": 0, "text": "café", "start": 0.0, "end": 1.0, "session_id": "s", "speaker": "A"}\n'
        '{"segment": 1, "text": "naïve", "start": 1.0, "end": 2.0, "session_id": "s"}\n'
    )
    # Fields beyond the columns (here "speaker") are left out, not an error; lines end in \n alone.
    assert t.to_csv() == "segment,text,start,end,session_id\n0,café,0.0,1.0,s\n1,naïve,1.0,2.0,s\n"
    assert t.to_vtt() == "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\ncafé\n\n00:00:01.000 --> 00:00:02.000\nnaïve\n"


def test_the_repr_previews_sixty_characters() -> None:
    sixty = Transcript(finals=[{"segment": 0, "text": "a" * 60, "start": 0.0, "end": 1.0, "session_id": "s"}],
                       session_id="s", duration=1.0, complete=True)
    assert repr(sixty) == f"Transcript(1 finals, 1.0 s of audio, complete, session_id='s', text='{'a' * 60}')"
    longer = Transcript(finals=[{"segment": 0, "text": "b" * 61, "start": 0.0, "end": 1.0, "session_id": "s"}])
    assert repr(longer).endswith(f"INCOMPLETE, session_id=None, text='{'b' * 57}...')")


def test_the_html_view_warns_only_when_incomplete() -> None:
    records = [{"segment": 0, "text": "a < b", "start": 0.25, "end": 1.0, "session_id": "s"}]
    table = ("<table class='bk-finals'><thead><tr><th>segment</th><th>start</th><th>end</th><th>text</th></tr>"
             "</thead><tbody><tr><td>0</td><td>0.25</td><td>1.00</td><td style='text-align:left'>a &lt; b</td>"
             "</tr></tbody></table>")
    assert finals_table_html(records) == table
    assert finals_table_html(records * 2).count("<tr><td>0</td>") == 2
    assert finals_table_html([{"text": "x"}], ("speaker",)).endswith(
        "<tbody><tr><td></td><td style='text-align:left'>x</td></tr></tbody></table>")
    done = Transcript(finals=records, complete=True)
    assert "bk-incomplete" not in done._repr_html_() and table in done._repr_html_()
    cut = Transcript(finals=records, gaps=[(1.0, 2.0)])
    assert ("<div class='bk-incomplete' style='color:#b00020'>&#9888; incomplete: 1.0 s of audio could not be "
            "transcribed (see .gaps)</div>") in cut._repr_html_()


def test_a_join_renumbers_the_segments_and_adds_the_durations() -> None:
    one = Transcript(session_id="s1", duration=1.5, complete=True)
    one.add_final("one", 0.0, 1.0, sent=1.0)
    two = Transcript(session_id="s2", duration=2.0, complete=True)
    two.add_final("two", 0.5, 1.5, sent=2.0)
    three = Transcript(session_id="s3", duration=0.5, complete=True)
    joined = Transcript.join([one, two, three])
    assert [(r["segment"], r["text"], r["session_id"]) for r in joined.finals] == [(0, "one", "s1"), (1, "two", "s2")]
    assert joined.session_id == "s3" and joined.duration == 4.0 and joined.complete
    assert Transcript.join([]).session_id is None


def test_the_html_view_of_a_complete_transcript_and_of_several_rows() -> None:
    records = [{"segment": i, "text": f"w{i}", "start": float(i), "end": i + 0.5, "session_id": "s"} for i in (0, 1)]
    rows = ("<tr><td>0</td><td>0.00</td><td>0.50</td><td style='text-align:left'>w0</td></tr>"
            "<tr><td>1</td><td>1.00</td><td>1.50</td><td style='text-align:left'>w1</td></tr>")
    assert finals_table_html(records).endswith(f"<tbody>{rows}</tbody></table>")
    done = Transcript(finals=records, duration=2.0, complete=True)
    assert done._repr_html_() == f"<div><b>Transcript</b>: 2 finals, 2.0 s of audio{finals_table_html(records)}</div>"


def test_without_pandas_to_dataframe_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(bk.MissingDependency) as info:
        sample().to_dataframe()
    assert str(info.value) == "to_dataframe needs pandas: pip install 'bk-notebook[pandas]'"


def test_player_and_plot_hand_the_transcript_and_the_audio_on(monkeypatch) -> None:
    require("anywidget", "the player widget")
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr("bk_notebook.widgets.player.Player", lambda *a, **kw: calls.append((a, kw)) or "player")
    monkeypatch.setattr("bk_notebook.plot.plot_transcript", lambda *a, **kw: calls.append((a, kw)) or "axes")
    t, audio = sample(), [0.0, 0.1]
    assert t.player(audio, sr=8000) == "player" and t.plot(audio, sr=8000, ax="ax") == "axes"
    assert calls == [((t, audio), {"sr": 8000}), ((t, audio), {"sr": 8000, "ax": "ax"})]


def test_export_transcripts_keys_several_transcripts_with_the_dataframe_columns() -> None:
    from bk_notebook.transcript import export_transcripts as render

    a = Transcript(finals=[{"segment": 0, "text": "halo", "start": 0.0, "end": 1.0, "session_id": "s1",
                            "language": "id"}])
    b = Transcript(finals=[{"segment": 0, "text": "hello", "start": 0.5, "end": 1.5, "session_id": "s2"}])
    csv_text = render([("a.wav", a), ("b.wav", b)], "csv")
    assert csv_text.splitlines()[0] == "file," + ",".join(a._columns())  # the to_dataframe columns, after the key
    assert csv_text.splitlines()[1:] == ["a.wav,0,halo,0.0,1.0,s1,id", "b.wav,0,hello,0.5,1.5,s2,"]
    lines = [json.loads(line) for line in render([("a.wav", a), ("b.wav", b)], "jsonl").splitlines()]
    assert [(r["file"], r["text"]) for r in lines] == [("a.wav", "halo"), ("b.wav", "hello")]
    table = render([("a.wav", a), ("b.wav", b)], "table").splitlines()
    assert table[0].split() == ["file", "segment", "start", "end", "text"] and table[2].endswith("hello")
    assert table[:2] == ["file   segment  start  end   text", "a.wav  0        0.00   1.00  halo"]  # aligned left
    assert render([("a.wav", a)], "srt") == a.to_srt() and render([("a.wav", a)], "vtt") == a.to_vtt()
    with pytest.raises(ValueError, match="one transcript"):
        render([("a.wav", a), ("b.wav", b)], "srt")
    with pytest.raises(ValueError, match="^format must be one of table, csv, jsonl, srt, vtt, not 'xml'$"):
        render([("a.wav", a)], "xml")


def test_the_format_table_is_what_the_command_line_offers_and_the_files_it_names() -> None:
    from bk_notebook.transcript import EXPORT_FORMATS

    # The user's contract: --format's choices, in this order, and --out-dir's file endings.
    assert {name: f.extension for name, f in EXPORT_FORMATS.items()} == {
        "table": ".txt", "csv": ".csv", "jsonl": ".jsonl", "srt": ".srt", "vtt": ".vtt"}
    assert list(EXPORT_FORMATS) == ["table", "csv", "jsonl", "srt", "vtt"]
    assert all(name == f.name for name, f in EXPORT_FORMATS.items())


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl", "srt", "vtt"])
def test_each_format_holds_every_transcript_given_or_refuses_more_than_one(fmt: str) -> None:
    from bk_notebook.errors import UsageError
    from bk_notebook.transcript import EXPORT_FORMATS, export_transcripts

    a = Transcript(finals=[{"segment": 0, "text": "halo", "start": 0.0, "end": 1.0, "session_id": "s1"}])
    b = Transcript(finals=[{"segment": 0, "text": "apa kabar", "start": 0.5, "end": 1.5, "session_id": "s2"}])
    one = export_transcripts([("a.wav", a)], fmt)
    assert "halo" in one and "apa kabar" not in one
    if EXPORT_FORMATS[fmt].one_transcript:  # a subtitle file is one timeline: two would overlap
        assert one == {"srt": a.to_srt, "vtt": a.to_vtt}[fmt]()
        with pytest.raises(UsageError, match=f"a {fmt} file holds one transcript; got 2"):
            export_transcripts([("a.wav", a), ("b.wav", b)], fmt)
    else:
        both = export_transcripts([("a.wav", a), ("b.wav", b)], fmt, key="source")
        assert "halo" in both and "apa kabar" in both and "a.wav" in both and "b.wav" in both and "source" in both
    assert [f for f, row in EXPORT_FORMATS.items() if row.one_transcript] == ["srt", "vtt"]


def test_a_final_keeps_its_language_as_its_last_key_only_when_named() -> None:
    t = Transcript()
    t.add_final("halo", 0.0, 0.5, sent=0.5, language="id")
    t.add_final("hello", 0.5, 1.0, sent=1.0)
    t.add_final("hai", 1.0, 1.5, sent=1.5, language="")
    assert list(t.finals[0])[-1] == "language" and t.finals[0]["language"] == "id"
    assert "language" not in t.finals[1] and "language" not in t.finals[2]


def test_a_missing_dependency_of_pandas_is_named(monkeypatch) -> None:
    from helpers import refuse_import

    refuse_import(monkeypatch, "pandas", missing="dateutil")
    with pytest.raises(ImportError, match=r"^to_dataframe needs pandas \(dateutil is missing\): pip install"):
        Transcript().to_dataframe()
