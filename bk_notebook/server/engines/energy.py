"""The energy engine: deterministic and dependency-free, one final per stretch of sound."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...errors import UsageError
from ...protocol import Final, Partial
from .base import Engine, EngineEvent

__all__ = ["EnergyEngine", "factory"]


class EnergyEngine:
    """Deterministic, dependency-free: one final per stretch of sound between silences.

    A 10 ms frame is sound when its level is above ``threshold_db`` dBFS; a
    stretch ends after ``silence`` seconds without sound, or after
    ``max_utterance_seconds`` of sound (the next frame of sound starts a new
    stretch).  Texts describe the stretch: partial ``"sound 0.40 s"`` while it
    grows, final ``"sound 1.20 s"``.
    """

    FRAME = 160  # samples: 10 ms

    def __init__(
        self,
        threshold_db: float = -40.0,
        silence: float = 0.3,
        min_sound: float = 0.05,
        max_utterance_seconds: float = 20.0,
    ) -> None:
        if max_utterance_seconds <= 0:
            raise UsageError("max_utterance_seconds must be positive")
        self.threshold = 32768.0 * 10 ** (threshold_db / 20)
        self.silence_frames = max(1, round(silence * 100))
        self.min_frames = max(1, round(min_sound * 100))
        self.max_frames = max(self.min_frames, round(max_utterance_seconds * 100))
        self.reset()

    def reset(self) -> None:
        self._carry = np.zeros(0, dtype=np.int16)
        self._frame = 0  # index of the next frame
        self._start: int | None = None  # first frame of the current stretch
        self._last_sound = 0
        self._reported = 0

    def feed(self, pcm: bytes) -> list[EngineEvent]:
        samples = np.concatenate([self._carry, np.frombuffer(pcm, dtype="<i2")])
        whole = len(samples) - len(samples) % self.FRAME
        self._carry = samples[whole:].copy()
        frames = samples[:whole].reshape(-1, self.FRAME).astype(np.float32)
        loud = np.sqrt((frames**2).mean(axis=1)) > self.threshold if len(frames) else []
        events: list[EngineEvent] = []
        for is_loud in loud:
            if is_loud:
                if self._start is None:
                    self._start = self._frame
                self._last_sound = self._frame
                if self._frame + 1 - self._start >= self.max_frames:
                    events.extend(self._close())  # forced endpoint: a stretch never grows without bound
            elif self._start is not None and self._frame - self._last_sound >= self.silence_frames:
                events.extend(self._close())
            self._frame += 1
        if self._start is not None:
            length = self._last_sound + 1 - self._start
            if length >= self.min_frames and length != self._reported:
                self._reported = length
                events.append(Partial(f"sound {length / 100:.2f} s"))
        return events

    def _close(self) -> list[EngineEvent]:
        assert self._start is not None
        start, end = self._start, self._last_sound + 1
        self._start, self._reported = None, 0
        if end - start < self.min_frames:  # no partial was shown for it either
            return []
        return [Final(f"sound {(end - start) / 100:.2f} s", start / 100, end / 100)]

    def flush(self) -> list[EngineEvent]:
        events = self._close() if self._start is not None else []
        self.reset()
        return events


def factory(*, preload: bool = True, **options: object) -> Callable[[], Engine]:
    """A constructor of energy engines (nothing to load)."""
    return lambda: EnergyEngine(**options)  # type: ignore[arg-type]
