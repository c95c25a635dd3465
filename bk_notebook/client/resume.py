"""What to send again after a lost connection: the audio after the last final.

Pure bookkeeping, no I/O.  Positions are byte offsets on the stream's own
timeline (all audio the user sent, 32000 bytes a second).  The buffer keeps
the audio from the end of the last final on, up to ``limit`` bytes; when a
long stretch without a final overflows it, the oldest audio is dropped and,
if a resumption then needs it, reported as a gap rather than silently lost.
"""

from __future__ import annotations

__all__ = ["ResumeBuffer"]


class ResumeBuffer:
    """Audio sent since the end of the last final, bounded by ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept_from = 0  # timeline position of self.data[0]
        self.final_end = 0  # timeline position where the last final ended
        self.data = bytearray()

    def sent(self, chunk: bytes | memoryview) -> None:
        """Record audio sent for the first time."""
        self.data += chunk
        overflow = len(self.data) - self.limit
        if overflow > 0:
            del self.data[:overflow]
            self.kept_from += overflow

    def final_ended_at(self, position: int) -> None:
        """A final covers the audio up to ``position``: it never needs sending again."""
        position -= position % 2  # whole samples
        if position <= self.final_end:
            return
        self.final_end = position
        cut = min(position - self.kept_from, len(self.data))
        if cut > 0:
            del self.data[:cut]
            self.kept_from += cut

    def resume(self) -> tuple[int, bytes, tuple[int, int] | None]:
        """Where the new session starts on the timeline, the audio to send again, and any gap."""
        gap = (self.final_end, self.kept_from) if self.kept_from > self.final_end else None
        return self.kept_from, bytes(self.data), gap
