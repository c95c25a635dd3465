"""Consecutive utterances packed into one Whisper window, and the window's text split back (pure).

A file fed faster than real time has its utterances ready long before anyone
reads them, and each decoded alone pays for a whole 30-second window.  As
faster-whisper's batched pipeline does, the utterances are laid end to end
(each with its padding) in windows of up to ``WINDOW_SECONDS``; the window is
decoded with Whisper's timestamp tokens, and each timed segment of text goes
back to the utterance its middle falls in.  Every utterance keeps its own
start and end (its VAD cut points), so it is still its own final.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Pack", "Piece", "split_by_timestamps"]

TIMESTAMP_SECONDS = 0.02  # one Whisper timestamp token step


@dataclass(frozen=True)
class Piece:
    """One utterance in a pack: its audio (padding included), its times in the session, its last partial.

    ``audio_start`` is where its audio (padding included) begins on the session's clock: word times
    found in a window are moved from the window's clock by it.
    """

    audio: np.ndarray
    start: float
    end: float
    partial: str = ""
    audio_start: float = 0.0


@dataclass
class Pack:
    """Utterances laid end to end in one window of at most ``limit`` samples."""

    limit: int
    pieces: list[Piece] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(len(p.audio) for p in self.pieces)

    def fits(self, piece: Piece) -> bool:
        """Whether ``piece`` fits beside those already packed (an empty pack takes any piece)."""
        return not self.pieces or self.samples + len(piece.audio) <= self.limit

    def audio(self) -> np.ndarray:
        return np.concatenate([p.audio for p in self.pieces])  # only a pack with pieces is ever decoded

    def bounds(self, sample_rate: int) -> list[float]:
        """Where each piece ends in the window, in seconds."""
        ends, total = [], 0
        for piece in self.pieces:
            total += len(piece.audio)
            ends.append(total / sample_rate)
        return ends


def split_by_timestamps(tokens: Sequence[int], timestamp_begin: int, bounds: Sequence[float]) -> list[list[int]]:
    """The text tokens of each piece: a segment between two timestamps goes to the piece its middle falls in.

    ``tokens`` is what Whisper generated for the window (timestamp tokens are ``>= timestamp_begin``);
    ``bounds`` are the pieces' ends in the window (seconds, increasing).  Text after the last
    timestamp ends at the window's end.
    """
    pieces: list[list[int]] = [[] for _ in bounds]
    if not bounds:
        return pieces
    start: float | None = None
    text: list[int] = []

    def close(end: float) -> None:
        if text:
            middle = ((start if start is not None else 0.0) + end) / 2
            pieces[min(bisect.bisect_left(bounds, middle), len(bounds) - 1)].extend(text)
            text.clear()

    for token in tokens:
        if token >= timestamp_begin:
            time = (token - timestamp_begin) * TIMESTAMP_SECONDS
            close(time)  # a timestamp after text ends a segment; one after another timestamp starts one
            start = time
        else:
            text.append(token)
    close(bounds[-1])
    return pieces
