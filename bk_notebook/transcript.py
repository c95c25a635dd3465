"""The result of a session: finals as DataFrame-ready records, text and exports."""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import missing_extra

__all__ = ["Transcript", "finals_table_html"]

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
        optional = [key for key in ("timing", "language") if any(key in r for r in self.finals)]
        return list(_COLUMNS) + optional

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
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self._columns(), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.finals)
        return out.getvalue()

    def to_jsonl(self) -> str:
        """One JSON object per final, one per line."""
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.finals)

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
