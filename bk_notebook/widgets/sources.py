"""Audio sources for notebooks, and how the :class:`Transcriber` drives each of them.

``from_recorder`` and the upload helpers read ipywebrtc recordings and ipywidgets
file uploads.  :func:`adapt_source` wraps any source the Transcriber takes in a
:class:`SourceAdapter`, one interface for all of them (start, stop, attach the
Transcriber's callbacks, its recording, its name), so the widget itself never
asks what kind of source it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..audio.convert import load_audio
from ..audio.soundcard import SoundCard
from ..errors import AudioError, BkError, missing_extra
from .microphone import Microphone

__all__ = ["SourceAdapter", "adapt_source", "from_recorder", "is_file_upload", "is_recorder", "uploaded_files"]


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


# ------------------------------------------------------------------ adapters
class SourceAdapter:
    """How the Transcriber drives one kind of source; ``source`` is the object the user passed.

    A *live* source (microphone, sound card) is started and stopped by the
    Transcriber's buttons and delivers chunks; the others deliver whole files
    (bytes) when the user records or uploads one.
    """

    live = False  # driven by Start/Stop and delivering chunks; else delivering whole files
    shown = True  # the source is a widget shown inside the Transcriber
    confirms_stop = False  # stop() returns after the last chunk; else wait for the source's confirmation
    drains_when_ended_early = False  # a session ended early drains its queued audio; else it is cancelled

    def __init__(self, source: Any) -> None:
        self.source = source

    def describe(self) -> str:
        """The source's kind, for the Transcriber's repr."""
        return type(self.source).__name__

    def attach(self, *, on_chunk: Callable[[bytes], Any], on_stop: Callable[[], Any],
               on_error: Callable[[str], Any], on_detach: Callable[[], Any],
               on_file: Callable[[bytes], Any]) -> None:
        """Register the Transcriber's callbacks (each adapter uses those its source can fire)."""
        raise NotImplementedError

    def start(self) -> None:
        self.source.start()

    def stop(self) -> None:
        self.source.stop()

    def stop_after_error(self) -> None:
        """The session failed: stop the capture if it is still running."""

    def stop_on_close(self) -> None:
        """The Transcriber closes during a run: stop the capture."""

    def recording(self) -> Any:
        """The run's audio as kept by the source (16 kHz int16), or ``None`` if it keeps none."""
        return None


class MicrophoneSource(SourceAdapter):
    live = True
    drains_when_ended_early = True  # the browser's chunks already queued are still sent

    def attach(self, *, on_chunk: Callable[[bytes], Any], on_stop: Callable[[], Any],
               on_error: Callable[[str], Any], on_detach: Callable[[], Any],
               on_file: Callable[[bytes], Any]) -> None:
        self.source.show_button = False  # one Start/Stop pair: the transcriber's
        self.source.on_chunk(on_chunk)
        self.source.on_stop(on_stop)
        self.source.on_error(on_error)
        self.source.on_detach(on_detach)  # a browser view can go away

    def stop_after_error(self) -> None:
        if self.source.status == "recording":
            self.source.stop()

    def stop_on_close(self) -> None:
        self.source.stop()

    def recording(self) -> Any:
        return self.source.recording


class SoundCardSource(SourceAdapter):
    live = True
    shown = False  # the kernel's sound card: a live source, not a widget
    confirms_stop = True  # SoundCard.stop() returns after its last chunk and its on_stop

    def attach(self, *, on_chunk: Callable[[bytes], Any], on_stop: Callable[[], Any],
               on_error: Callable[[str], Any], on_detach: Callable[[], Any],
               on_file: Callable[[bytes], Any]) -> None:
        self.source.on_chunk(on_chunk)
        self.source.on_stop(on_stop)
        self.source.on_error(on_error)  # the kernel's sound card has no view to lose: no on_detach

    def stop_after_error(self) -> None:
        self.source.stop()


class RecorderSource(SourceAdapter):
    """An ``ipywebrtc.AudioRecorder``: each finished recording is one file."""

    def attach(self, *, on_chunk: Callable[[bytes], Any], on_stop: Callable[[], Any],
               on_error: Callable[[str], Any], on_detach: Callable[[], Any],
               on_file: Callable[[bytes], Any]) -> None:
        def on_recording(change: dict[str, Any]) -> None:
            data = bytes(change["new"] or b"")
            if data:  # ipywebrtc sets the value once, when a recording has stopped
                on_file(data)

        self.source.audio.observe(on_recording, names="value")


class UploadSource(SourceAdapter):
    """An ``ipywidgets.FileUpload``: each uploaded file is one file."""

    def attach(self, *, on_chunk: Callable[[bytes], Any], on_stop: Callable[[], Any],
               on_error: Callable[[str], Any], on_detach: Callable[[], Any],
               on_file: Callable[[bytes], Any]) -> None:
        def on_upload(change: dict[str, Any]) -> None:
            for _name, data in uploaded_files(change["new"]):
                on_file(data)

        self.source.observe(on_upload, names="value")


def adapt_source(source: Any) -> SourceAdapter:
    """The adapter for a Transcriber's ``source``; the one place that asks what kind it is."""
    if isinstance(source, Microphone):
        return MicrophoneSource(source)
    if isinstance(source, SoundCard):
        return SoundCardSource(source)
    if is_recorder(source):
        return RecorderSource(source)
    if is_file_upload(source):
        return UploadSource(source)
    raise BkError("source must be None (microphone), a SoundCard, an ipywebrtc AudioRecorder or an "
                  "ipywidgets FileUpload")
