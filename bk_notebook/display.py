"""Live display of one transcription in the calling cell: progress, the partial, the finals.

In a notebook with ipywidgets it is a widget shown in the cell's own output;
elsewhere it falls back to a tqdm text bar and printed finals on stderr.
"""

from __future__ import annotations

import html
import sys
from typing import Any

from .protocol import SAMPLE_RATE
from .transcript import Transcript, finals_table_html

__all__ = ["LiveDisplay"]


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class LiveDisplay:
    """Shows audio seconds sent against the total, the live partial and each final."""

    def __init__(self, duration: float | None, *, force_widgets: bool | None = None) -> None:
        self.duration = duration
        self.records: list[dict[str, Any]] = []
        self._audio: list[Any] = []  # the 16 kHz PCM sent, for the player shown at the end (widgets only)
        use_widgets = _in_notebook() if force_widgets is None else force_widgets
        self._widgets = self._build_widgets() if use_widgets else None
        self._bar = None if self._widgets else self._build_text_bar()

    def _build_widgets(self) -> Any:
        try:
            import ipywidgets as w
            from IPython.display import display
        except ImportError:
            return None
        self.progress_bar = w.FloatProgress(value=0.0, min=0.0, max=self.duration or 1.0, description="sent")
        self.progress_label = w.Label("0.0 s")
        self.progress_label.add_class("bk-progress-label")
        self.partial_html = w.HTML("", layout=w.Layout(min_height="1.5em"))
        self.finals_html = w.HTML(finals_table_html([]))
        self.box = w.VBox([w.HBox([self.progress_bar, self.progress_label]), self.partial_html, self.finals_html])
        self.box.add_class("bk-live-display")
        display(self.box)
        return self.box

    def _build_text_bar(self) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=round(self.duration, 1) if self.duration else None, unit="s", desc="audio sent",
                    file=sys.stderr, bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} s")

    def keep(self, block: Any) -> None:
        """Keep a block of the audio sent, so that the finished display can play it back."""
        if self._widgets is not None:
            self._audio.append(block)

    def _show_player(self, transcript: Transcript) -> None:
        if not self._audio or not transcript.finals:
            return
        import numpy as np

        try:
            player = transcript.player(np.concatenate(self._audio), sr=SAMPLE_RATE)
        except Exception as exc:  # noqa: BLE001 - the transcript is the result; the player is a view of it
            self.partial_html.value = f"<i>no playback: {html.escape(str(exc))}</i>"
            return
        finally:
            self._audio = []
        self.box.children = (*self.box.children, player)

    def progress(self, seconds: float) -> None:
        if self._widgets is not None:
            if self.duration is None and seconds > self.progress_bar.max:
                self.progress_bar.max = seconds * 2
            self.progress_bar.value = min(seconds, self.progress_bar.max)
            total = f" / {self.duration:.1f}" if self.duration else ""
            self.progress_label.value = f"{seconds:.1f}{total} s"
        elif self._bar is not None:
            self._bar.update(round(seconds - self._bar.n, 1))

    def partial(self, text: str) -> None:
        if self._widgets is not None:
            self.partial_html.value = f"<i>{html.escape(text)}</i>"

    def final(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self._widgets is not None:
            self.partial_html.value = ""
            self.finals_html.value = finals_table_html(self.records)
        elif self._bar is not None:
            self._bar.write(f"[{record['start']:.2f}-{record['end']:.2f} s] {record['text']}", file=sys.stderr)

    def close(self, transcript: Transcript | None = None, error: BaseException | None = None) -> None:
        if transcript is not None:
            self.progress(transcript.duration)
            if self._widgets is not None:
                self._show_player(transcript)
            if self._widgets is not None and self.duration is None:
                self.progress_bar.max = max(transcript.duration, 0.1)
                self.progress_bar.value = self.progress_bar.max
        if error is not None:
            message = "interrupted" if not isinstance(error, Exception) else f"error: {error}"
            kept = getattr(error, "transcript", None)
            count = len(kept) if kept is not None else len(self.records)
            message += f" ({count} finals kept, incomplete)"
        elif transcript is not None and not transcript.complete:
            message = transcript.incomplete_reason
        else:
            message = ""
        if self._widgets is not None and message:
            self.partial_html.value = f"<span class='bk-incomplete' style='color:#b00020'>{html.escape(message)}</span>"
        if self._bar is not None:
            self._bar.close()
            if message:
                print(f"bk_notebook: {message}", file=sys.stderr)
