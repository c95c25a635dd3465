"""``Microphone``: capture in the browser, 16 kHz int16 chunks into the kernel as binary buffers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from ..audio.capture import CaptureCallbacks
from ..protocol import SAMPLE_RATE
from ._deps import anywidget, front_end, traitlets

__all__ = ["Microphone"]



class Microphone(CaptureCallbacks, anywidget.AnyWidget):
    """A start/stop microphone with a level meter and elapsed time.

    The browser's AudioWorklet downmixes and resamples to 16 kHz int16 at the
    audio context's real rate and sends 3200-byte (100 ms) chunks as binary
    buffers.  Register ``mic.on_chunk(fn)`` to receive each chunk as bytes;
    after a stop, ``mic.recording`` holds everything captured as an int16 array.

    The capture stops when the widget is closed and when its last view leaves
    the page (its cell re-ran or its output was cleared): no microphone stays
    open behind a widget nobody can see.

    Attributes
    ----------
    status : str
        ``"idle"``, ``"recording"`` or ``"error"`` (synced from the browser).
    error : str
        The message shown in the widget when the microphone could not start.
    """

    _esm = front_end("microphone.js")
    _css = front_end("microphone.css")
    _capture_id = traitlets.Unicode().tag(sync=True)
    show_button = traitlets.Bool(True).tag(sync=True)  # a Transcriber drives capture with its own buttons
    status = traitlets.Unicode("idle")
    error = traitlets.Unicode("")
    browser_sample_rate = traitlets.Float(0.0)

    sample_rate = SAMPLE_RATE

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(_capture_id=uuid.uuid4().hex, **kwargs)
        self._chunks: list[bytes] = []
        self._init_callbacks()
        self._detach_callbacks: list[Callable[[], Any]] = []
        self.on_msg(self._on_browser_message)

    def __repr__(self) -> str:
        seconds = sum(len(chunk) for chunk in self._chunks) / 2 / self.sample_rate
        return f"Microphone(status={self.status!r}, {seconds:.1f} s captured)"

    # ----------------------------------------------------------------- python API
    def on_detach(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` when the last view of this widget left the page."""
        self._detach_callbacks.append(callback)

    def close(self) -> None:
        """Stop capturing (the browser releases the microphone) and close the widget.

        It lets go of its audio and callbacks, so nothing keeps it (or what they hold) alive.
        """
        if self.comm is not None:
            self.stop()
        super().close()
        self._chunks = []
        self._clear_callbacks()
        self._detach_callbacks.clear()

    def start(self) -> None:
        """Ask the browser to start capturing (as pressing Start does)."""
        self.send({"type": "start"})

    def stop(self) -> None:
        """Ask the browser to stop capturing and release the microphone."""
        self.send({"type": "stop"})

    @property
    def recording(self) -> np.ndarray:
        """Everything captured since the last start, as 1-D int16 at 16 kHz."""
        return np.frombuffer(b"".join(self._chunks), dtype="<i2").astype(np.int16)

    # ------------------------------------------------------------- from the page
    def _on_browser_message(self, _widget: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        kind = content.get("type")
        if kind == "chunk" and buffers:
            chunk = bytes(buffers[0])
            self._chunks.append(chunk)
            self._fire_chunk(chunk)
        elif kind == "started":
            self._chunks = []
            self.browser_sample_rate = float(content.get("sample_rate") or 0.0)
            self.error = ""
            self.status = "recording"
        elif kind == "stopped":
            self.status = "idle"
            self._fire_stop()
        elif kind == "detached":
            for detached in list(self._detach_callbacks):
                detached()
        elif kind == "error":
            self.error = str(content.get("message", "the microphone could not start"))
            self.status = "error"
            self._fire_error(self.error)
