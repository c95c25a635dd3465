"""``Player``: the waveform with each final as a region, the transcript beside it, click to hear.

The front end is wavesurfer.js with its Regions plugin, bundled into ``player.js``
(source and pinned versions in ``js/``).  The waveform is drawn at once from
peaks computed here (a few kB, synced); the audio itself travels only when a
front end asks for it, as one binary buffer in a custom message, so it is never
part of the widget state and never saved into the notebook file.  The user may
ask for that with ``embed_audio=True``.

Encoding (``audio_format="auto"``): recordings up to :data:`WAV_LIMIT_BYTES` of
16 kHz int16 go as WAV; longer ones as FLAC (soundfile, lossless, about 56% of
WAV for speech, fast to encode).  ``audio_format="opus"`` sends Opus in Ogg
(24 kbit/s, PyAV): about a tenth of WAV, for slow links, but libopus costs about
half a second of kernel CPU per minute of audio (see BENCHMARKS.md).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..audio.convert import to_pcm16
from ..errors import UsageError, missing_extra
from ..protocol import SAMPLE_RATE
from ._deps import anywidget, front_end, traitlets

if TYPE_CHECKING:
    from ..transcript import Transcript

__all__ = ["LOW_PROBABILITY", "WAV_LIMIT_BYTES", "Player", "encode_audio", "peaks"]

WAV_LIMIT_BYTES = 1_000_000  # ~31 s of 16 kHz int16: small enough to send uncompressed
PEAKS = 8000  # waveform resolution sent to the browser (bytes, one per peak)
OPUS_BIT_RATE = 24_000
_MIME = {"wav": "audio/wav", "flac": "audio/flac", "opus": "audio/ogg"}


def peaks(pcm: np.ndarray, count: int = PEAKS) -> bytes:
    """The waveform's envelope: the largest ``|sample|`` of ``count`` equal stretches, as uint8 (255 = full scale)."""
    if pcm.size == 0:
        return b""
    count = max(1, min(count, pcm.size))
    edges = np.linspace(0, pcm.size, count + 1).astype(np.int64)
    magnitude = np.abs(pcm.astype(np.int32))
    top = np.maximum.reduceat(magnitude, edges[:-1])
    return np.ceil(top * (255 / 32768)).astype(np.uint8).tobytes()


def _opus_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _encode_opus(pcm: np.ndarray) -> bytes:
    import av

    out_buffer = io.BytesIO()
    with av.open(out_buffer, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=SAMPLE_RATE)
        stream.bit_rate = OPUS_BIT_RATE
        for i in range(0, pcm.size, SAMPLE_RATE):
            frame = av.AudioFrame.from_ndarray(pcm[None, i:i + SAMPLE_RATE], format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return out_buffer.getvalue()


def encode_audio(pcm: np.ndarray, audio_format: str = "auto") -> tuple[bytes, str]:
    """Encode 16 kHz int16 PCM for the browser; returns ``(data, mime type)``.

    Parameters
    ----------
    pcm : numpy.ndarray
        1-D int16 at 16 kHz.
    audio_format : {"auto", "wav", "flac", "opus"}
        ``"auto"``: WAV up to :data:`WAV_LIMIT_BYTES` of PCM, else FLAC.
        ``"opus"`` needs PyAV (the ``webrtc`` extra).
    """
    import soundfile as sf

    if audio_format not in ("auto", *_MIME):
        raise UsageError(f"audio_format must be 'auto', 'wav', 'flac' or 'opus', not {audio_format!r}")
    if audio_format == "auto":
        audio_format = "wav" if pcm.nbytes <= WAV_LIMIT_BYTES else "flac"
    if audio_format == "opus":
        if not _opus_available():
            raise missing_extra("audio_format='opus'", "PyAV", "webrtc")
        return _encode_opus(pcm), _MIME["opus"]
    out = io.BytesIO()
    sf.write(out, pcm, SAMPLE_RATE, format=audio_format.upper(), subtype="PCM_16")
    return out.getvalue(), _MIME[audio_format]


LOW_PROBABILITY = 0.5  # "auto": words the recogniser gave less than even odds are shaded


def _records(finals: Transcript | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the front end draws of each final; ``words`` only for a final whose words were timed."""
    records: list[dict[str, Any]] = list(getattr(finals, "finals", finals))  # type: ignore[arg-type]
    drawn = []
    for i, r in enumerate(records):
        final = {"segment": int(r.get("segment", i)), "text": str(r["text"]), "start": float(r["start"]),
                 "end": float(r["end"])}
        if r.get("words"):
            final["words"] = [_word(w) for w in r["words"]]
        drawn.append(final)
    return drawn


def _word(w: dict[str, Any]) -> dict[str, Any]:
    probability = w.get("probability")
    return {"word": str(w["word"]), "start": float(w["start"]), "end": float(w["end"]),
            "probability": None if probability is None else float(probability)}


def _threshold(low_probability: float | str | None, records: list[dict[str, Any]]) -> float:
    """The probability below which a word is shaded; 0 shades nothing."""
    if low_probability == "auto":
        timed = any(w["probability"] is not None for r in records for w in r.get("words", ()))
        return LOW_PROBABILITY if timed else 0.0
    if low_probability is None:
        return 0.0
    if isinstance(low_probability, bool) or not isinstance(low_probability, (int, float)) \
            or not 0.0 <= low_probability <= 1.0:
        raise UsageError(f"low_probability must be 'auto', None or a number from 0 to 1, not {low_probability!r}")
    return float(low_probability)


class Player(anywidget.AnyWidget):
    """The waveform with each final as a labelled region and the transcript as clickable lines.

    Clicking a region or a line plays from that final's ``start``; while
    playing, the current final is highlighted in both; with the player focused,
    space toggles play.  Finals with timed words (the local server's ``words``)
    show each word on its own: the word playing is highlighted, clicking a word
    plays from it, and words the recogniser was unsure of are shaded.

    Parameters
    ----------
    finals : Transcript or iterable of dict
        Records with ``text``, ``start`` and ``end`` (seconds into ``audio``).
    audio : array_like, path or bytes
        The audio the finals were transcribed from (anything :func:`~bk_notebook.to_pcm16` takes).
    sr : float, optional
        Sample rate of ``audio`` when it is an array.
    audio_format : {"auto", "wav", "flac", "opus"}
        How the audio is encoded for the browser (see :func:`encode_audio`).
    embed_audio : bool
        Put the encoded audio in the widget state, so a notebook saved with
        widget state plays without a kernel (and grows by the audio's size).
    low_probability : "auto", float or None
        Words with a probability below this are shaded; ``"auto"`` (the default)
        is 0.5 when the words carry probabilities and off otherwise; None is off.

    Attributes
    ----------
    bytes_sent : int
        Bytes of audio sent to front ends so far (one reply per front end that asked).
    """

    _esm = front_end("player.js")
    _css = front_end("player.css")
    finals: Any = traitlets.List().tag(sync=True)
    duration = traitlets.Float(0.0).tag(sync=True)
    mime = traitlets.Unicode("audio/wav").tag(sync=True)
    low_probability = traitlets.Float(0.0).tag(sync=True)
    _peaks = traitlets.Bytes(b"").tag(sync=True)
    _embedded = traitlets.Bytes(b"").tag(sync=True)

    def __init__(self, finals: Transcript | Iterable[dict[str, Any]], audio: Any, sr: float | None = None, *,
                 audio_format: str = "auto", embed_audio: bool = False,
                 low_probability: float | str | None = "auto", **kwargs: Any) -> None:
        if audio_format not in ("auto", *_MIME):
            raise UsageError(f"audio_format must be 'auto', 'wav', 'flac' or 'opus', not {audio_format!r}")
        records = _records(finals)
        threshold = _threshold(low_probability, records)
        pcm = to_pcm16(audio, sr)  # bad audio raises AudioError here, before anything is shown
        super().__init__(finals=records, duration=pcm.size / SAMPLE_RATE, _peaks=peaks(pcm),
                         low_probability=threshold, **kwargs)
        self._pcm = pcm
        self._audio_format = audio_format
        self._encoded: tuple[bytes, str] | None = None
        self.bytes_sent = 0
        if embed_audio:
            data, self.mime = self.encoded
            self._embedded = data
        self.on_msg(self._on_browser_message)

    @property
    def encoded(self) -> tuple[bytes, str]:
        """The audio as sent to the browser: ``(data, mime type)``, encoded on first use."""
        if self._encoded is None:
            self._encoded = encode_audio(self._pcm, self._audio_format)
        return self._encoded

    def close(self) -> None:
        """Close the widget and drop its audio and the encoded copy (a closed one-hour player keeps nothing)."""
        super().close()
        self._encoded = None
        self._pcm = np.zeros(0, dtype=np.int16)

    def _on_browser_message(self, _widget: Any, content: dict[str, Any], _buffers: list[Any]) -> None:
        if content.get("type") == "request_audio":
            data, mime = self.encoded
            self.mime = mime
            self.send({"type": "audio", "mime": mime}, buffers=[data])
            self.bytes_sent += len(data)

    def __repr__(self) -> str:
        return f"Player({len(self.finals)} finals, {self.duration:.1f} s of audio)"
