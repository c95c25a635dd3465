"""Whisper (faster-whisper, CTranslate2 int8) on the engine interface: VAD-cut utterances.

Theory of operation
-------------------
Whisper decodes whole windows, not streams, so the engine cuts the stream
itself.  Silero VAD (shipped inside faster-whisper) scores every 32 ms frame,
its recurrent state kept across chunks (streamed scores equal those of one call
over the whole audio).  An utterance starts at a frame scored above
``threshold`` and ends after ``silence`` seconds below ``threshold - 0.15``;
continuous speech is cut at ``max_utterance_seconds``, at its last short pause
when there is one in the second half.  Each utterance is decoded with
``padding`` seconds of audio around it (the Indonesian words right swung from
15 to 24 of 67 with that padding), and its final carries its language.

Audio that the VAD never calls speech is never decoded: silence and noise give
no text (Whisper invents "Thank you for watching" on silence otherwise).
Decoding is greedy at temperature 0 (faster-whisper's fallback to higher
temperatures took up to 8.5 s on bad audio), without conditioning on earlier
text, with a token limit proportional to the audio.

Every decode pays for a 30-second window (~0.5-0.8 s for base on 2 cores), so
partials are rationed: the open utterance is re-decoded at most once per
``partial_interval`` seconds of audio, less often when decodes take long (the
interval grows to twice the last partial's wall time, waiting included), and
not at all while the engine lags behind real time or is fed a file faster than
real time (the finals arrive sooner than partials could be read), nor while
the shared model was busy more than half of the last 10 seconds.  Sessions
share one model per process and take turns (:class:`~.decoder.ModelTurns`): finals
before partials, otherwise first come, first served.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ...errors import MissingDependency, UsageError
from ...protocol import SAMPLE_RATE, Final, Partial, WordTiming
from .base import Engine, EngineEvent
from .decoder import Decoded, DecodeOptions, SharedModel, shared_model
from .languages import whisper_language
from .weights import INSTALL_HINT, model_folder

__all__ = ["StreamingVad", "WhisperEngine", "factory"]

logger = logging.getLogger("bk_notebook.server")
AUTO_LANGUAGES = ("id", "en")  # open detection called espeak Indonesian Thai: detect among the expected ones
WINDOW_SECONDS = 28.0  # one Whisper window is 30 s; leave room for the padding
# Partials start only while the shared model decoded less than this share of the last 10 s: finals of
# every session keep the rest (measured: base partials on a loaded 2-core machine delayed finals 2-3x).
PARTIAL_BUDGET = 0.5


class StreamingVad:
    """Silero VAD over pushed audio: one speech probability per 512-sample (32 ms) frame."""

    FRAME = 512
    CONTEXT = 64  # samples of the previous frame that the model sees before each frame

    def __init__(self) -> None:
        try:
            from faster_whisper.vad import get_vad_model
        except ImportError as exc:
            raise MissingDependency(f"the whisper engine needs faster-whisper: {INSTALL_HINT}") from exc
        self._session = get_vad_model().session  # one per process (cached); onnxruntime's run is thread-safe
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(self.CONTEXT, dtype=np.float32)
        self._carry = np.zeros(0, dtype=np.float32)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities of the whole frames now available (the rest waits for more audio)."""
        samples = np.concatenate([self._carry, samples])
        whole = len(samples) // self.FRAME * self.FRAME
        self._carry = samples[whole:]
        if not whole:
            return np.zeros(0, dtype=np.float32)
        frames = samples[:whole].reshape(-1, self.FRAME)
        contexts = np.concatenate([self._context[None], frames[:-1, -self.CONTEXT:]])
        batch = np.concatenate([contexts, frames], axis=1)
        # The model runs the batch as a sequence, its state carried from frame to frame and back to us.
        out, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = frames[-1, -self.CONTEXT:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def pending(self) -> int:
        """Samples waiting for a whole frame."""
        return len(self._carry)


class WhisperEngine:
    """Whisper through faster-whisper: VAD-cut utterances, rationed partials, one shared model.

    Parameters
    ----------
    model : str
        ``"base"`` (multilingual, the default), ``"tiny.en"`` (English only,
        faster) or a folder holding a CTranslate2 Whisper model.
    language : str
        ``"auto"`` (detect each utterance's language among Indonesian and
        English), ``"id"``, ``"en"`` or any Whisper language code.
    partials : bool
        Re-decode the open utterance for partial results (rationed, see the
        module's notes); False decodes finals only (about 4 live streams instead
        of 1 on 2 cores with the base model).
    max_utterance_seconds : float
        Continuous speech is cut into utterances of at most this long (at most 28 s).
    silence : float
        Seconds of non-speech that end an utterance.
    padding : float
        Seconds of audio kept around each utterance for its decode.
    partial_interval : float
        Least audio seconds between two partial decodes of one session.
    threshold : float
        Silero VAD speech probability above which a frame is speech.
    min_speech : float
        Utterances shorter than this (clicks, coughs) are dropped undecoded.
    word_timestamps : bool
        Time each word of a final (its ``words``), by cross-attention alignment on the
        final's own encoder pass; partials are never timed.
    prompt : str, optional
        Whisper's initial prompt: text in the style and vocabulary to expect
        (``"Rapat tentang machine learning dan Kubernetes."``).
    hotwords : str, optional
        Words to expect (names, terms), given to the decoder before the prompt.
    task : {"transcribe", "translate"}
        ``"translate"``: finals in English, whatever was spoken (Indonesian, say); each
        final's ``language`` is still the detected language of the speech.
    """

    def __init__(
        self,
        model: str = "base",
        language: str = "auto",
        partials: bool = True,
        max_utterance_seconds: float = 20.0,
        silence: float = 0.5,
        padding: float = 0.3,
        partial_interval: float = 1.0,
        threshold: float = 0.5,
        min_speech: float = 0.25,
        word_timestamps: bool = True,
        prompt: str | None = None,
        hotwords: str | None = None,
        task: str = "transcribe",
    ) -> None:
        if max_utterance_seconds <= 0:
            raise UsageError("max_utterance_seconds must be positive")
        if task not in ("transcribe", "translate"):
            raise UsageError(f"task must be 'transcribe' or 'translate', not {task!r}")
        language = whisper_language(language)  # any case; ISO 639-1 or Whisper's own code
        self._shared: SharedModel = shared_model(model)
        if not self._shared.multilingual and language not in ("en", "auto"):
            raise UsageError(f"the Whisper model {model!r} is English only; for language={language!r} use "
                             "model='base'")
        self.language = language if self._shared.multilingual else "en"
        if task == "translate" and not self._shared.multilingual:
            raise UsageError(f"the Whisper model {model!r} is English only and cannot translate; use model='base'")
        self.options = DecodeOptions(words=bool(word_timestamps), prompt=_text_option("prompt", prompt),
                                     hotwords=_text_option("hotwords", hotwords), task=task)
        self.partials = bool(partials)
        self.max_samples = int(min(max_utterance_seconds, WINDOW_SECONDS) * SAMPLE_RATE)
        self.silence_samples = int(silence * SAMPLE_RATE)
        self.pad_samples = int(padding * SAMPLE_RATE)
        self.partial_samples = int(partial_interval * SAMPLE_RATE)
        self.min_samples = int(min_speech * SAMPLE_RATE)
        self.threshold = threshold
        self.neg_threshold = max(threshold - 0.15, 0.01)
        self._vad = StreamingVad()
        self.reset()

    # ----------------------------------------------------------------- interface
    def set_prompt(self, prompt: str | None) -> None:
        """Use ``prompt`` for the session that starts now, not the server's (None keeps the server's)."""
        if prompt is not None:
            self._session_options = replace(self.options, prompt=_text_option("prompt", prompt))

    def reset(self) -> None:
        self._session_options = self.options  # a session's own prompt ends with it
        self._vad.reset()
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0  # session sample index of _buffer[0]
        self._scored = 0  # samples the VAD has scored
        self._in_speech = False
        self._utt_start = 0  # where the open utterance's speech began
        self._decode_from = 0  # where its decoded audio begins (padding included)
        self._quiet_since: int | None = None  # first non-speech frame of the current pause
        self._last_pause = 0  # a recent non-speech frame inside the utterance: where a forced cut goes
        self._last_partial = ""
        self._partial_at = 0  # samples when the last partial decode started
        self._partial_wall = 0.0  # wall seconds the last partial decode took, waiting included
        self._wall_start = 0.0  # monotonic time of the first feed
        self._least_lag = float("inf")

    def feed(self, pcm: bytes) -> list[EngineEvent]:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        now = time.monotonic()
        if self._end() == 0:
            self._wall_start = now
        self._buffer = np.concatenate([self._buffer, samples])
        events: list[EngineEvent] = []
        for probability in self._vad(samples):
            events.extend(self._frame(float(probability)))
            self._scored += StreamingVad.FRAME
        audio_seconds, wall_seconds = self._end() / SAMPLE_RATE, now - self._wall_start
        self._least_lag = min(self._least_lag, wall_seconds - audio_seconds)
        if not self._in_speech:
            self._trim(self._scored - self.pad_samples)  # only what a next utterance's padding needs
        elif self.partials and not events and self._partial_due(audio_seconds, wall_seconds):
            events.extend(self._partial())
        return events

    def flush(self) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        pending = self._vad.pending()
        if pending:  # the last part-frame: scored padded with silence
            for probability in self._vad(np.zeros(StreamingVad.FRAME - pending, dtype=np.float32)):
                events.extend(self._frame(float(probability), last=True))
        if self._in_speech:
            speech_end = self._quiet_since if self._quiet_since is not None else self._end()
            events.extend(self._final(speech_end, self._end()))
        self.reset()
        return events

    # ---------------------------------------------------------------- cutting
    def _end(self) -> int:
        return self._buffer_start + len(self._buffer)

    def _frame(self, probability: float, *, last: bool = False) -> list[EngineEvent]:
        start = self._scored
        end = min(start + StreamingVad.FRAME, self._end()) if last else start + StreamingVad.FRAME
        if not self._in_speech:
            if probability >= self.threshold:
                self._in_speech = True
                self._utt_start = self._last_pause = start
                self._decode_from = max(self._buffer_start, start - self.pad_samples)
                self._quiet_since = None
                self._partial_at = start
                self._last_partial = ""
                self._trim(self._decode_from)
            return []
        if probability >= self.threshold:
            self._quiet_since = None
        elif probability < self.neg_threshold:
            self._last_pause = start
            if self._quiet_since is None:
                self._quiet_since = start
            if end - self._quiet_since >= self.silence_samples:
                return self._final(self._quiet_since, min(self._quiet_since + self.pad_samples, end))
        if end - self._decode_from >= self.max_samples:
            return self._forced_cut(end)
        return []

    def _forced_cut(self, end: int) -> list[EngineEvent]:
        """Cut continuous speech: at its last short pause if that is in the second half, else here."""
        cut = self._last_pause if self._last_pause - self._decode_from > self.max_samples // 2 else end
        events = self._final(cut, cut, keep_going=True)
        self._utt_start = self._decode_from = self._last_pause = cut
        self._partial_at = cut
        self._trim(cut)
        return events

    def _final(self, speech_end: int, decode_end: int, *, keep_going: bool = False) -> list[EngineEvent]:
        speech_start = self._utt_start
        self._in_speech = keep_going
        self._quiet_since = None
        previous_partial, self._last_partial = self._last_partial, ""
        if speech_end - speech_start < self.min_samples and not previous_partial:
            return []  # a click or a cough: never decoded, never shown
        decoded = self._decode(self._decode_from, decode_end, final=True)
        # Words already shown as a partial are never lost: a final decode that finds nothing keeps them.
        text = decoded.text or previous_partial
        if not text:
            return []
        start, end = speech_start / SAMPLE_RATE, speech_end / SAMPLE_RATE
        words = _on_session_clock(decoded.words, self._decode_from / SAMPLE_RATE, start, end) if decoded.text else ()
        return [Final(text, start, end, language=decoded.language, words=words)]

    def _trim(self, keep_from: int) -> None:
        drop = keep_from - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start = keep_from

    # ---------------------------------------------------------------- partials
    def _partial_due(self, audio_seconds: float, wall_seconds: float) -> bool:
        position = self._end()
        interval = max(self.partial_samples, int(2 * self._partial_wall * SAMPLE_RATE))  # at most half the time
        if position - self._partial_at < interval or position - self._utt_start < self.partial_samples:
            return False
        if self._quiet_since is not None:
            return False  # a pause: the final may be due in a moment, and must not wait behind a partial
        if self._shared.turns.busy() > PARTIAL_BUDGET:
            return False  # the shared model is busy (other sessions, a loaded machine): finals first
        if audio_seconds - wall_seconds > 2.0:
            return False  # fed faster than real time (a file): the finals come sooner than partials could be read
        # Audio arrives at most in real time when live, so the least lag seen is this stream's own latency;
        # lagging half a second more than that means decodes fell behind: catch up before spending on partials.
        return (wall_seconds - audio_seconds) - self._least_lag < 0.5

    def _partial(self) -> list[EngineEvent]:
        began = time.monotonic()
        self._partial_at = self._end()
        text = self._decode(self._decode_from, self._end(), final=False).text
        self._partial_wall = time.monotonic() - began
        if not text or text == self._last_partial:
            return []
        self._last_partial = text
        return [Partial(text)]

    # ---------------------------------------------------------------- decoding
    def _decode(self, start: int, end: int, *, final: bool) -> Decoded:
        audio = self._buffer[max(0, start - self._buffer_start) : end - self._buffer_start]
        languages = AUTO_LANGUAGES if self.language == "auto" else (self.language,)
        max_new_tokens = int(min(400, 24 + 12 * len(audio) / SAMPLE_RATE))
        options = self._session_options if final else replace(self._session_options, words=False)
        with self._shared.turns.turn(final=final):
            decoded = self._shared.decode(audio, languages, max_new_tokens, options)
        if not any(ch.isalnum() for ch in decoded.text):
            return Decoded("", decoded.language)  # "..." or a lone "-": nothing was said
        return decoded


def _text_option(name: str, value: str | None) -> str | None:
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{name} must be a str, got {type(value).__name__}")
    return value.strip() or None if value is not None else None


def _on_session_clock(words: tuple[WordTiming, ...], offset: float, start: float, end: float) -> tuple[WordTiming, ...]:
    """Words timed from the decoded window's start, moved onto the session's clock and kept inside the final.

    The window holds ``padding`` around the speech, and the alignment can put a word's edge there.
    """
    timed = []
    for word in words:
        word_start = min(max(word.start + offset, start), end)
        word_end = min(max(word.end + offset, word_start), end)
        timed.append(replace(word, start=round(word_start, 3), end=round(word_end, 3)))
    return tuple(timed)

def factory(*, preload: bool = True, **options: object) -> Callable[[], Engine]:
    """A constructor of Whisper engines; the model prepared now (with ``preload``, loaded), or an error saying why."""
    model = str(options.get("model") or "base")
    if preload:
        shared_model(model)  # raises MissingDependency or a UsageError naming the cache, or loads and logs
    else:
        model_folder(model)  # each engine process loads it; the cache is joined (or refused) here, once
    return lambda: WhisperEngine(**options)  # type: ignore[arg-type]
