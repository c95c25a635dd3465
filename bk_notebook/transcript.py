"""The result of a session: finals as DataFrame-ready records, text and exports."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError, missing_extra

__all__ = ["EXPORT_FORMATS", "ExportFormat", "Transcript", "export_transcripts", "finals_table_html"]

_COLUMNS = ("segment", "text", "start", "end", "session_id")


def _clock(seconds: float, decimal: str) -> str:
    millis = int(round(max(seconds, 0.0) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


@dataclass
class Transcript:
    """Every final of a session, in order.

    Attributes
    ----------
    finals : list of dict
        One record per final: ``segment``, ``text``, ``start``, ``end`` (seconds
        of audio) and ``session_id``; records whose times were not sent by the
        server are estimated from the audio sent and say ``"timing": "estimated"``;
        a server that names the final's language adds ``language`` (``"id"``).
    session_id : str or None
        The server's session id (of the last session, if several were joined).
    duration : float
        Seconds of audio sent.
    gaps : list of (start, end)
        Stretches of audio that could not be transcribed: a resumption after a
        lost connection needed audio older than the client's resume buffer.
    complete : bool
        True only when the server's ``audioStop`` reply arrived and nothing
        failed: every final of the audio sent is here.  False while a session
        runs, and for a session that ended by an error, an interrupt, a missing
        ``audioStop`` reply or a gap; the finals it has are still valid.
    """

    finals: list[dict[str, Any]] = field(default_factory=list)
    session_id: str | None = None
    duration: float = 0.0
    gaps: list[tuple[float, float]] = field(default_factory=list)
    complete: bool = False

    def add_final(
        self, text: str, start: float | None, end: float | None, *, sent: float, language: str | None = None
    ) -> dict[str, Any]:
        """Append a final; ``sent`` is the audio seconds sent when it arrived (for estimates).

        ``language`` (the local Whisper engine names it) becomes the record's last key.
        """
        record: dict[str, Any] = {"segment": len(self.finals), "text": text}
        if start is None or end is None:
            previous_end = self.finals[-1]["end"] if self.finals else 0.0
            record.update(start=round(previous_end, 3), end=round(max(sent, previous_end), 3))
            record["session_id"] = self.session_id
            record["timing"] = "estimated"
        else:
            record.update(start=start, end=end, session_id=self.session_id)
        if language:
            record["language"] = language
        self.finals.append(record)
        return record

    @property
    def text(self) -> str:
        """The finals' text joined by single spaces."""
        return " ".join(r["text"] for r in self.finals if r["text"])

    def records(self) -> list[dict[str, Any]]:
        """A copy of the finals, ready for ``pandas.DataFrame(...)``."""
        return [dict(r) for r in self.finals]

    def __len__(self) -> int:
        return len(self.finals)

    def to_dataframe(self) -> Any:
        """The finals as a ``pandas.DataFrame`` (needs the ``pandas`` extra)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise missing_extra("to_dataframe", "pandas", "pandas", exc) from exc
        return pd.DataFrame(self.records(), columns=self._columns())

    def _columns(self) -> list[str]:
        """The record fields, with ``timing`` (``language``) only when some final has one."""
        return _columns(self.finals)

    def to_srt(self) -> str:
        """SubRip subtitles, one cue per final."""
        cues = [
            f"{i}\n{_clock(r['start'], ',')} --> {_clock(r['end'], ',')}\n{r['text']}\n"
            for i, r in enumerate(self.finals, start=1)
        ]
        return "\n".join(cues)

    def to_vtt(self) -> str:
        """WebVTT subtitles, one cue per final."""
        cues = [f"{_clock(r['start'], '.')} --> {_clock(r['end'], '.')}\n{r['text']}\n" for r in self.finals]
        return "WEBVTT\n\n" + "\n".join(cues)

    def to_csv(self) -> str:
        """The finals as CSV with a header row (a ``timing`` column only when some time was estimated)."""
        return _csv(self.finals, self._columns())

    def to_jsonl(self) -> str:
        """One JSON object per final, one per line."""
        return _jsonl(self.finals)

    def __repr__(self) -> str:
        preview = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return (
            f"Transcript({len(self.finals)} finals, {self.duration:.1f} s of audio, "
            f"{'complete' if self.complete else 'INCOMPLETE'}, session_id={self.session_id!r}, text={preview!r})"
        )

    @property
    def incomplete_reason(self) -> str:
        """Why ``complete`` is False, in words for a status line ("" when complete)."""
        if self.complete:
            return ""
        if self.gaps:
            lost = sum(end - start for start, end in self.gaps)
            return f"incomplete: {lost:.1f} s of audio could not be transcribed (see .gaps)"
        return "incomplete: the session did not end with the server's audioStop reply; later finals may be missing"

    def _repr_html_(self) -> str:
        warning = (
            "" if self.complete
            else f"<div class='bk-incomplete' style='color:#b00020'>&#9888; {html.escape(self.incomplete_reason)}</div>"
        )
        return (
            f"<div><b>Transcript</b>: {len(self.finals)} finals, {self.duration:.1f} s of audio{warning}"
            f"{finals_table_html(self.finals)}</div>"
        )

    def player(self, audio: Any, sr: float | None = None) -> Any:
        """A widget: the waveform with each final as a region, the lines beside it; click one to hear it.

        ``audio`` is what was transcribed (array with ``sr``, path or bytes).
        See :class:`bk_notebook.widgets.player.Player` (needs the ``widgets`` extra).
        """
        from .widgets.player import Player

        return Player(self, audio, sr=sr)

    def plot(self, audio: Any, sr: float | None = None, ax: Any = None) -> Any:
        """Waveform and spectrogram with each final as a labelled span; returns the spectrogram's Axes.

        See :func:`bk_notebook.plot.plot_transcript` (needs the ``plot`` extra).
        """
        from .plot import plot_transcript

        return plot_transcript(self, audio, sr=sr, ax=ax)

    @classmethod
    def join(cls, parts: list[Transcript]) -> Transcript:
        """One transcript of several sessions in order; segments renumbered, each keeps its session_id."""
        joined = cls(session_id=parts[-1].session_id if parts else None,
                     complete=bool(parts) and all(part.complete for part in parts))
        for part in parts:
            for record in part.finals:
                joined.finals.append({**record, "segment": len(joined.finals)})
            joined.gaps.extend(part.gaps)
            joined.duration += part.duration
        return joined


def finals_table_html(records: list[dict[str, Any]], columns: tuple[str, ...] = ("segment", "start", "end")) -> str:
    """An HTML table of final records (escaped), for notebook displays."""
    head = "".join(f"<th>{c}</th>" for c in (*columns, "text"))

    def cell(value: Any) -> str:
        return f"{value:.2f}" if isinstance(value, float) else html.escape(str(value))

    rows = "".join(
        "<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in columns)
        + f"<td style='text-align:left'>{html.escape(r['text'])}</td></tr>"
        for r in records
    )
    return f"<table class='bk-finals'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


# ----------------------------------------------------------------- exports of one or several transcripts
def _columns(records: list[dict[str, Any]]) -> list[str]:
    optional = [key for key in ("timing", "language") if any(key in r for r in records)]
    return list(_COLUMNS) + optional


def _csv(records: list[dict[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _text_table(records: list[dict[str, Any]], key: str) -> str:
    header = (key, "segment", "start", "end", "text")
    rows = [(str(r[key]), str(r["segment"]), f"{r['start']:.2f}", f"{r['end']:.2f}", r["text"]) for r in records]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(header[:-1])]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
             for row in [header, *rows]]
    return "\n".join(lines) + "\n"


def _keyed(results: list[tuple[str, Transcript]], key: str) -> list[dict[str, Any]]:
    return [{key: name, **record} for name, transcript in results for record in transcript.finals]


def _table_of(results: list[tuple[str, Transcript]], key: str) -> str:
    return _text_table(_keyed(results, key), key)


def _csv_of(results: list[tuple[str, Transcript]], key: str) -> str:
    records = _keyed(results, key)
    return _csv(records, [key, *_columns(records)])


def _jsonl_of(results: list[tuple[str, Transcript]], key: str) -> str:
    return _jsonl(_keyed(results, key))


@dataclass(frozen=True)
class ExportFormat:
    """One way to write transcripts out: a row of :data:`EXPORT_FORMATS`."""

    name: str  #: what ``--format`` and :func:`export_transcripts` take
    extension: str  #: the file name's ending, for ``--out-dir``
    one_transcript: bool  #: a subtitle file is one recording's timeline: it holds one transcript only
    write: Callable[[list[tuple[str, Transcript]], str], str]  #: (name, transcript) pairs and the key: the text


#: Every export format, by name: the one table that :func:`export_transcripts`, the CLI's
#: ``--format`` choices, its ``--out`` and ``--out-dir`` checks, and ``listen`` read.
EXPORT_FORMATS: Mapping[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("table", ".txt", False, _table_of),  # aligned text, for a terminal
    ExportFormat("csv", ".csv", False, _csv_of),
    ExportFormat("jsonl", ".jsonl", False, _jsonl_of),
    ExportFormat("srt", ".srt", True, lambda results, _key: results[0][1].to_srt()),
    ExportFormat("vtt", ".vtt", True, lambda results, _key: results[0][1].to_vtt()),
)}


def export_transcripts(results: list[tuple[str, Transcript]], fmt: str, key: str = "file") -> str:
    """Several transcripts as one output in format ``fmt``, each row keyed by its source (``key``: the source's name).

    ``"table"`` (aligned text), ``"csv"`` and ``"jsonl"`` hold every final of every transcript, the
    same columns as :meth:`Transcript.to_dataframe` after ``key``; ``"srt"`` and ``"vtt"`` take exactly
    one transcript (a subtitle file is one timeline).  The formats are :data:`EXPORT_FORMATS`.
    """
    export = EXPORT_FORMATS.get(fmt)
    if export is None:
        raise UsageError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    if export.one_transcript and len(results) != 1:
        raise UsageError(f"a {fmt} file holds one transcript; got {len(results)}")
    return export.write(results, key)
