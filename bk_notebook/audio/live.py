"""Live audio, block by block: the pipeline's push-driven face and the level meter.

A sound card's callback thread feeds the pipeline's
:class:`~bk_notebook.audio.pcm.BlockConverter` (which files and arrays go
through too) one block at a time with constant memory, and :class:`Rechunker`
cuts the result into protocol chunks; a test can feed any split of a recording
and compare with :func:`~bk_notebook.to_pcm16`.
"""

from __future__ import annotations

import math

import numpy as np

from .pcm import Rechunker, convert_blocks

__all__ = ["SILENCE_DBFS", "Rechunker", "convert_blocks", "level_dbfs"]

SILENCE_DBFS = -100.0  # the level of digital silence


def level_dbfs(chunk: bytes | np.ndarray) -> float:
    """RMS level of int16 PCM in dB relative to full scale (``SILENCE_DBFS`` for silence)."""
    pcm = np.frombuffer(chunk, dtype="<i2") if isinstance(chunk, (bytes, bytearray, memoryview)) else chunk
    if not len(pcm):
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(pcm.astype(np.float64))))) / 32768.0
    return max(SILENCE_DBFS, 20.0 * math.log10(rms)) if rms > 0 else SILENCE_DBFS
