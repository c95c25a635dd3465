"""A static picture of a transcript on its audio: waveform and spectrogram, the finals as labelled spans.

matplotlib and librosa's display module are imported when a plot is drawn,
and a missing one raises :class:`~bk_notebook.errors.MissingDependency`
naming the ``plot`` extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio.convert import to_pcm16
from .errors import UsageError, missing_extra
from .protocol import SAMPLE_RATE

if TYPE_CHECKING:
    from .transcript import Transcript

__all__ = ["SPAN_GID", "plot_transcript"]

SPAN_GID = "bk-final"  # every span drawn for a final carries this gid (and its index in the label)
_COLORS = ("tab:blue", "tab:orange")
_LABEL_CHARS = 40


def _imports() -> tuple[Any, Any, Any]:
    try:
        import librosa
        import librosa.display
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise missing_extra("Transcript.plot", "matplotlib and librosa", "plot", exc) from exc
    return plt, librosa, librosa.display


def _axes_pair(ax: Any, plt: Any) -> tuple[Any | None, Any]:
    if ax is None:
        fig, (wave_ax, spec_ax) = plt.subplots(2, 1, figsize=(12, 5), sharex=True,
                                               gridspec_kw={"height_ratios": [1, 2]}, layout="constrained")
        return wave_ax, spec_ax
    if isinstance(ax, Sequence) or isinstance(ax, np.ndarray):
        axes = list(np.ravel(np.asarray(ax, dtype=object)))
        if len(axes) != 2:
            raise UsageError(f"ax must be one Axes or a pair (waveform, spectrogram), not {len(axes)} axes")
        return axes[0], axes[1]
    return None, ax


def _label(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def _spans(ax: Any, finals: list[dict[str, Any]], *, labels: bool, filled: bool) -> None:
    for i, record in enumerate(finals):
        color = _COLORS[i % 2]
        style = {"facecolor": color, "alpha": 0.22} if filled else {"facecolor": "none", "edgecolor": color,
                                                                      "linewidth": 1.5}
        ax.axvspan(record["start"], record["end"], gid=SPAN_GID, label=f"{SPAN_GID}-{i}", **style)
        if labels:
            ax.text((record["start"] + record["end"]) / 2, 0.97, _label(record["text"]),
                    transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=8, clip_on=True,
                    gid=f"{SPAN_GID}-text",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})


def plot_transcript(finals: Transcript | Iterable[dict[str, Any]], audio: Any, sr: float | None = None,
                    ax: Any = None) -> Any:
    """Draw the waveform and a mel spectrogram of ``audio`` with each final as a labelled span.

    Parameters
    ----------
    finals : Transcript or iterable of dict
        Records with ``text``, ``start`` and ``end`` in seconds of ``audio``.
    audio : array_like, path or bytes
        Anything :func:`~bk_notebook.to_pcm16` takes; drawn at 16 kHz mono.
    sr : float, optional
        Sample rate of ``audio`` when it is an array.
    ax : matplotlib Axes, pair of Axes, or None
        ``None``: a new figure with the waveform above the spectrogram.  One
        Axes: the spectrogram only, drawn there.  A pair: waveform in the
        first, spectrogram in the second.

    Returns
    -------
    matplotlib.axes.Axes
        The spectrogram's Axes (its ``.figure`` is the whole picture).  Each
        final is one span per Axes with ``gid == SPAN_GID``; the labels are
        on the top Axes.
    """
    plt, librosa, display = _imports()
    records: list[dict[str, Any]] = list(getattr(finals, "finals", finals))  # type: ignore[arg-type]
    y = to_pcm16(audio, sr).astype(np.float32) / 32768.0
    wave_ax, spec_ax = _axes_pair(ax, plt)

    if wave_ax is not None:
        display.waveshow(y, sr=SAMPLE_RATE, ax=wave_ax, color="0.35")
        wave_ax.set(ylabel="amplitude", xlabel="", ylim=(-1, 1))
        wave_ax.label_outer()
        _spans(wave_ax, records, labels=True, filled=True)
    # A mel spectrogram (80 bands, 10 ms hop) over 60 dB: speech reads clearly, the noise floor goes dark,
    # and the saved picture stays small (a linear 80 dB one of the sample made a 4x larger PNG).
    mel = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_fft=512, hop_length=160, n_mels=80)
    db = librosa.power_to_db(mel, ref=np.max, top_db=60)
    display.specshow(db, sr=SAMPLE_RATE, hop_length=160, x_axis="time", y_axis="mel", ax=spec_ax, cmap="magma")
    spec_ax.set(ylabel="Hz", xlabel="seconds", xlim=(0, y.size / SAMPLE_RATE))
    _spans(spec_ax, records, labels=wave_ax is None, filled=False)
    return spec_ax
