from __future__ import annotations

import json

import bk_notebook as bk
from bk_notebook.transcript import Transcript


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
