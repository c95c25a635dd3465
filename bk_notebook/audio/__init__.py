"""Audio in: files and arrays, live sources and devices, as 16 kHz mono int16.

The one block pipeline every source goes through (``pcm``: native blocks to 16 kHz mono int16,
cut into 3200-byte chunks), decoding files and checking arrays (``convert``), the level meter
(``live``), sound devices (``devices``, ``soundcard``) and the callbacks every live source shares
(``capture``).
"""

from __future__ import annotations

from .convert import (
    CHUNK_BYTES,
    SAMPLE_RATE,
    AudioSource,
    PcmSource,
    chunk_pcm,
    load_audio,
    open_audio,
    sample_path,
    to_pcm16,
)

__all__ = [
    "CHUNK_BYTES",
    "SAMPLE_RATE",
    "AudioSource",
    "PcmSource",
    "chunk_pcm",
    "load_audio",
    "open_audio",
    "sample_path",
    "to_pcm16",
]
