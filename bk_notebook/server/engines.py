"""Recognisers for the local server, behind one small interface.

An engine serves one session at a time and is reused for the next one (a
PocketSphinx decoder costs ~0.3 s and ~135 MB to build).  ``feed`` takes raw
16 kHz int16 PCM of any length and returns the protocol's own ``Partial`` and
``Final`` events, with ``Final.start``/``end`` in seconds of the session's
audio; ``flush`` ends the stream and returns what is left.  Engines are
blocking code: the server calls them from worker threads, never on its loop.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Protocol, Union

import numpy as np

from ..errors import BkError, UsageError, install_hint, missing_extra
from ..protocol import SAMPLE_RATE, Final, Partial
from .languages import check_engine_languages

__all__ = ["Engine", "EnergyEngine", "PocketSphinxEngine", "chosen_engine", "engine_constructor", "engine_factory",
           "prepared_engine", "resolve_engine"]

logger = logging.getLogger("bk_notebook.server")
WHISPER_ONLY = ("language", "model", "partials")  # options that only the whisper engine takes
_auto_logged = threading.Event()  # "engine auto: ..." is said once per process

EngineEvent = Union[Partial, Final]


class Engine(Protocol):
    """What the server needs of a recogniser."""

    def reset(self) -> None:
        """Forget the previous session; times restart at 0."""

    def feed(self, pcm: bytes) -> list[EngineEvent]:
        """Take more PCM; return partials (only when they change) and finals."""

    def flush(self) -> list[EngineEvent]:
        """End of stream: return the last finals."""


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


class PocketSphinxEngine:
    """PocketSphinx (US English, model shipped in the wheel): Endpointer-cut utterances.

    Parameters
    ----------
    grammar : str, optional
        A JSGF grammar restricting what can be recognised (near-exact text for
        known sentences, as in teaching material); default: the open language model.
    max_utterance_seconds : float
        Force an endpoint after this much continuous sound (default 20 s).  Noise
        or speech without pauses otherwise makes one endless utterance whose
        final decode grows with it (and holds the GIL while it runs).
    **config
        Passed to ``pocketsphinx.Decoder`` (e.g. ``hmm=``, ``lm=``, ``dict=``).
        ``loglevel`` defaults to ``"ERROR"``: PocketSphinx warns once per frame
        on long noisy utterances (hundreds of MB of stderr), errors still show.
    """

    def __init__(self, grammar: str | None = None, max_utterance_seconds: float = 20.0, **config: object) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise missing_extra("the pocketsphinx engine", "pocketsphinx", "server", exc) from exc
        if max_utterance_seconds <= 0:
            raise UsageError("max_utterance_seconds must be positive")
        self.max_utterance_seconds = float(max_utterance_seconds)
        config.setdefault("dither", False)  # dither draws random numbers: results would vary run to run
        config.setdefault("loglevel", "ERROR")
        self._decoder = Decoder(samprate=SAMPLE_RATE, **config)
        if grammar:
            self._decoder.add_jsgf_string("bk_grammar", grammar)
            self._decoder.activate_search("bk_grammar")
        # Live CMN adapts across utterances; restoring it per session (reset) makes a
        # session's result independent of whoever used this decoder before.
        self._initial_cmn = self._decoder.get_cmn()
        self.reset()

    def reset(self) -> None:
        from pocketsphinx import Endpointer

        if getattr(self, "_in_utt", False):
            self._decoder.end_utt()
        # Feature extraction keeps live-CMN history that set_cmn() alone does not clear: without
        # this, a session stopped mid-utterance changed the next session's words on this decoder.
        self._decoder.reinit_feat()
        self._decoder.set_cmn(self._initial_cmn)
        self._endpointer = Endpointer(window=0.3, ratio=0.9, sample_rate=SAMPLE_RATE)
        self._carry = b""
        self._in_utt = False
        self._last_partial: str | None = None
        self._position = 0.0  # session time (s) of the end of the speech decoded so far
        self._region_start = 0.0  # where the endpointer's current stretch of speech began
        self._utt_start = 0.0  # where the current utterance began (a forced cut starts one mid-stretch)
        self._utt_cmn = self._initial_cmn

    def feed(self, pcm: bytes) -> list[EngineEvent]:
        ep = self._endpointer
        data = self._carry + pcm
        size = ep.frame_bytes  # 960 bytes: does not divide 3200, hence the carry
        # Keep at least one byte back: flush() then always has a non-empty last frame for
        # end_stream(), which raises IndexError on an empty one and drops the buffered speech.
        whole = (len(data) - 1) // size * size if data else 0
        events: list[EngineEvent] = []
        for offset in range(0, whole, size):
            was_in_speech = ep.in_speech
            speech = ep.process(data[offset : offset + size])
            if speech is not None:
                if not was_in_speech:
                    self._position = self._region_start = float(ep.speech_start)
                events.extend(self._decode(speech))
            if self._in_utt and not ep.in_speech:
                events.extend(self._end_utterance())
            elif self._in_utt and self._position - self._utt_start >= self.max_utterance_seconds:
                events.extend(self._end_utterance(forced=True))
        self._carry = data[whole:]
        return events

    def _decode(self, speech: bytes) -> list[EngineEvent]:
        if not speech:
            return []
        if not self._in_utt:
            if self._position == self._region_start:  # a new stretch of speech, not a forced cut in one
                self._utt_cmn = self._decoder.get_cmn()
            self._decoder.start_utt()
            self._in_utt = True
            self._last_partial = None
            self._utt_start = self._position
        self._decoder.process_raw(speech, full_utt=False)
        self._position += len(speech) / (2 * SAMPLE_RATE)
        hyp = self._decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if text and text != self._last_partial:
            self._last_partial = text
            return [Partial(text)]
        return []

    def _end_utterance(self, *, forced: bool = False) -> list[EngineEvent]:
        self._decoder.end_utt()  # second pass: the final may differ from the last partial
        self._in_utt = False
        if forced:
            # Live CMN has adapted to the whole endless stretch (noise, typically); decoding the
            # next piece from that estimate costs ~10x more CPU and finds nothing, so restore
            # the estimate from before the stretch.
            self._decoder.set_cmn(self._utt_cmn)
        hyp = self._decoder.hyp()
        # A very short utterance (a stop just after speech began) can lose its words in the
        # second pass; the user already saw the partial, so it becomes the final.
        text = (hyp.hypstr if hyp is not None else "") or self._last_partial or ""
        self._last_partial = None
        if not text:
            return []
        return [Final(text, self._utt_start, self._position)]  # _position > _utt_start: speech was decoded

    def flush(self) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        if self._carry and self._endpointer.in_speech:  # end_stream() is for the end of a speech region only
            events.extend(self._decode(self._endpointer.end_stream(self._carry) or b""))
        if self._in_utt:
            events.extend(self._end_utterance())
        self.reset()
        return events


def chosen_engine(name: str, model: object = None) -> str:
    """What :func:`resolve_engine` returns, without its log line (for checks made before anything starts)."""
    if name != "auto":
        return name
    from .models import whisper_available

    return "whisper" if whisper_available(str(model or "base")) else "pocketsphinx"


def resolve_engine(name: str, model: object = None) -> str:
    """The engine ``name`` stands for: ``"auto"`` is whisper when it can load, else pocketsphinx (logged once)."""
    chosen = chosen_engine(name, model)
    if name == "auto" and not _auto_logged.is_set():
        _auto_logged.set()
        if chosen == "whisper":
            logger.info("engine auto: whisper (faster-whisper and its model are installed)")
        else:
            logger.info("engine auto: pocketsphinx (US English); %s for Whisper, Indonesian included",
                        install_hint("whisper"))
    return chosen


def _without_whisper_options(options: dict[str, object]) -> dict[str, object]:
    """What an engine other than whisper takes of ``options``; a language it cannot do is refused."""
    language = str(options.get("language") or "auto").strip().lower()
    if language not in ("auto", "en"):
        raise missing_extra(f"language={language!r}", "the whisper engine (pocketsphinx knows US English only)",
                            "whisper")
    return {k: v for k, v in options.items() if k not in WHISPER_ONLY}


def _prepare_whisper(model: str, preload: bool) -> None:
    """The model's folder checked (and its cache joined); with ``preload`` the model loaded, once per process."""
    from .models import model_folder, shared_model

    if preload:
        shared_model(model)  # raises MissingDependency, or loads and logs
    else:
        model_folder(model)  # each engine process loads it; the cache is made (or refused) here, once


def engine_factory(name: str, *, preload: bool = True, **options: object) -> Callable[[], Engine]:
    """Return a zero-argument constructor for ``name``.

    ``name`` is ``"auto"`` (whisper when installed, else pocketsphinx),
    ``"whisper"``, ``"pocketsphinx"``, ``"energy"``, or ``"module:Class"``
    naming a user's class with ``reset``/``feed``/``flush`` (for instance a Vosk
    wrapper).  The module is imported with the current directory on
    ``sys.path`` (appended, as uvicorn does for ``module:app``), so
    ``bk-notebook serve --engine my_engines:MyEngine`` finds ``./my_engines.py``.
    With ``preload`` (the default) the whisper model is loaded now, once per
    process, so that the first session does not wait for it.  Engine, model and
    language are checked together first (:func:`prepared_engine`).
    """
    return engine_constructor(*prepared_engine(name, options, preload=preload))


def prepared_engine(name: str, options: dict[str, object], *, preload: bool = True) -> tuple[str, dict[str, object]]:
    """The engine ``name`` stands for, and its options, checked and ready before a server listens.

    ``"auto"`` is resolved; the language is checked against the engine and model (a
    :class:`UsageError` for what cannot work); Whisper's model is prepared (its cache
    joined; with ``preload``, loaded).  When ``"auto"`` chose Whisper and its model
    cannot be prepared (an unwritable or full cache, broken files), PocketSphinx is
    used instead, with one warning, if the language is English or ``"auto"``.
    """
    asked = name
    if name == "auto":
        name = resolve_engine(name, options.get("model"))
        if name != "whisper":
            options = _without_whisper_options(options)
    options = check_engine_languages(name, options)  # before any model is prepared or loaded
    if name == "whisper":
        try:
            _prepare_whisper(str(options.get("model") or "base"), preload)
        except (BkError, RuntimeError, OSError) as exc:
            if asked != "auto" or options.get("language", "auto") not in ("auto", "en"):
                raise
            logger.warning("engine auto: the Whisper model cannot be prepared (%s): using pocketsphinx (US English) "
                           "instead", exc)
            return "pocketsphinx", _without_whisper_options(options)
    return name, options


def engine_constructor(name: str, options: dict[str, object]) -> Callable[[], Engine]:
    """A zero-argument constructor of the engine ``name`` (resolved, as :func:`prepared_engine` returns it)."""
    if name == "whisper":
        from .whisper import WhisperEngine

        return lambda: WhisperEngine(**options)  # type: ignore[arg-type]
    if name == "pocketsphinx":
        try:
            import pocketsphinx  # noqa: F401
        except ImportError as exc:
            raise missing_extra("the pocketsphinx engine", "pocketsphinx", "server", exc) from exc
        return lambda: PocketSphinxEngine(**options)  # type: ignore[arg-type]
    if name == "energy":
        return lambda: EnergyEngine(**options)  # type: ignore[arg-type]
    module_name, _, class_name = name.partition(":")
    if not module_name or not class_name:
        raise UsageError(f"unknown engine {name!r}: use 'auto', 'whisper', 'pocketsphinx', 'energy' or 'module:Class'")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load engine {name!r}: {exc}") from exc
    for method in ("reset", "feed", "flush"):
        if not callable(getattr(cls, method, None)):
            raise UsageError(f"engine {name!r} has no {method}() method; see the README's engine section")
    return lambda: cls(**options)  # type: ignore[no-any-return]

