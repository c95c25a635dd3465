"""Audio in: files and arrays, live sources and devices, as 16 kHz mono int16.

Files and arrays to 16 kHz mono int16 (``convert``), live conversion (``live``), sound
devices (``devices``, ``soundcard``) and the callbacks every live source shares (``capture``).
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
