"""Other audio sources for notebooks: ipywebrtc recordings and ipywidgets file uploads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..audio import load_audio
from ..errors import AudioError, missing_extra

__all__ = ["from_recorder", "is_file_upload", "is_recorder", "uploaded_files"]


def is_recorder(source: Any) -> bool:
    """Whether ``source`` is an ``ipywebrtc.AudioRecorder`` (checked without importing ipywebrtc)."""
    return type(source).__name__ == "AudioRecorder" and hasattr(source, "audio")


def is_file_upload(source: Any) -> bool:
    return type(source).__name__ == "FileUpload" and hasattr(source, "value")


def uploaded_files(value: Any) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of each file in a ``FileUpload.value`` (ipywidgets 8: a tuple of dicts)."""
    items = value.values() if isinstance(value, dict) else value  # ipywidgets 7 used a dict by name
    for item in items or ():
        yield str(item.get("name", "upload")), bytes(item["content"])


def from_recorder(recorder: Any) -> tuple[np.ndarray, int]:
    """Decode an ``ipywebrtc.AudioRecorder``'s recording (WebM/Opus) into ``(samples, sr)``.

    Raises
    ------
    AudioError
        Nothing has been recorded yet.
    MissingDependency
        PyAV is needed for WebM/Opus: ``pip install 'bk-notebook[webrtc]'``.
    """
    if not is_recorder(recorder):
        raise AudioError(f"from_recorder takes an ipywebrtc.AudioRecorder, got {type(recorder).__name__}")
    data = bytes(recorder.audio.value or b"")
    if not data:
        raise AudioError("the recorder holds no recording yet: press record, then stop, then call from_recorder")
    try:
        import av  # noqa: F401
    except ImportError as exc:
        raise missing_extra("decoding browser recordings", "PyAV", "webrtc", exc) from exc
    return load_audio(data)
