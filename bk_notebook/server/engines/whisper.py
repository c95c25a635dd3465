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
the shared model was busy more than half of the last 10 seconds.  Finals and
partials are decoded with a 10-second encoder input instead of 30 (the
audio and a second when longer): 2-3x less work on a quiet machine, and no
more word errors on the project's English and Indonesian sets.  Sessions share one model per process
and hand their windows to its :class:`~.decoder.Decoder`, which batches them:
finals first, then a file's packs, then partials.

Files and live speech differ.  Fed faster than real time (a file), the
engine does not wait for each final: consecutive utterances are packed into
windows of up to 28 s (:mod:`.packing`) and decoded while the next ones are
cut; each comes back as its own final with its own VAD times, in order.
Live, the final's decode starts speculatively once ``speculate`` seconds of
silence have passed, and is used when the silence completes (dropped if the
speech resumes), so a final waits for less than the whole silence plus a
decode.  A forced cut of continuous speech goes to the frame the VAD found
least like speech in the utterance's second half: a pause between words.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ...errors import MissingDependency, UsageError
from ...protocol import SAMPLE_RATE, Final, Partial, WordTiming
from .base import Engine, EngineEvent
from .decoder import Decoded, DecodeOptions, Decoder, Priority, SharedModel, Window, shared_model
from .languages import whisper_language
from .packing import Pack, Piece
from .weights import INSTALL_HINT, model_folder

__all__ = ["StreamingVad", "WhisperEngine", "factory"]

logger = logging.getLogger("bk_notebook.server")
AUTO_LANGUAGES = ("id", "en")  # open detection called espeak Indonesian Thai: detect among the expected ones
WINDOW_SECONDS = 28.0  # one Whisper window is 30 s; leave room for the padding
# Partials start only while the shared model decoded less than this share of the last 10 s: finals of
# every session keep the rest (measured: base partials on a loaded 2-core machine delayed finals 2-3x).
PARTIAL_BUDGET = 0.5
# The encoder input of a final or a partial: 10 s, or the audio and a second when longer (decoder.Window).
# Measured (benchmarks/bench_final_encoder.py, quiet): 2.3-3.1x less work than Whisper's 30 s per utterance
# (1.8x at 11-14 s), and no more word errors on any of the project's sets (HTS, espeak, Indonesian).
# A pack fills its 30 s window anyway.
SHORT_ENCODER_FRAMES = 1000
FULL_ENCODER_FRAMES = 3000
PACKS_IN_FLIGHT = 1  # a file's packs decoding while the engine cuts the next
FILE_AHEAD = 2.0  # audio seconds ahead of wall time from which a session counts as a file


@dataclass
class _Pending:
    """Finals decoding: one utterance (``pieces`` of one) or a pack, in the order they were cut."""

    result: concurrent.futures.Future[Decoded]
    pieces: list[Piece]


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
        module's notes); False decodes finals only (less CPU; with partials, 8 live
        streams of base kept their finals' p95 at 1.5 s on 2 cores, BENCHMARKS.md §17).
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
    speculate : float or None
        Live: start the final's decode after this many seconds of silence (with this much
        padding after the speech), use it if the silence lasts ``silence`` seconds; None waits
        for the whole silence.
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
        speculate: float | None = 0.2,
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
        if speculate is not None and not 0 < speculate < silence:
            raise UsageError("speculate must be None or between 0 and silence")
        self.speculate_samples = None if speculate is None else int(speculate * SAMPLE_RATE)
        self.threshold = threshold
        self.neg_threshold = max(threshold - 0.15, 0.01)
        self._vad = StreamingVad()
        self.reset()

    # ----------------------------------------------------------------- interface
    def set_prompt(self, prompt: str | None) -> None:
        """Use ``prompt`` for the session that starts now, not the server's (None keeps the server's)."""
        if prompt is not None:
            self._session_options = replace(self.options, prompt=_text_option("prompt", prompt))

    @property
    def decoder(self) -> Decoder:
        return self._shared.decoder

    def reset(self) -> None:
        self._session_options = self.options  # a session's own prompt ends with it
        for pending in getattr(self, "_pending", ()):
            pending.result.cancel()  # not started yet: dropped; started: its result is ignored
        self._drop_speculation()
        self._vad.reset()
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0  # session sample index of _buffer[0]
        self._scored = 0  # samples the VAD has scored
        self._in_speech = False
        self._utt_start = 0  # where the open utterance's speech began
        self._decode_from = 0  # where its decoded audio begins (padding included)
        self._quiet_since: int | None = None  # first non-speech frame of the current pause
        self._scores: list[tuple[int, float]] = []  # (frame start, probability) of the open utterance
        self._last_partial = ""
        self._partial_at = 0  # samples when the last partial decode started
        self._partial_wall = 0.0  # wall seconds the last partial decode took, waiting included
        self._wall_start = 0.0  # monotonic time of the first feed
        self._least_lag = float("inf")
        self._is_file = False  # fed faster than real time: finals are packed, not awaited
        self._pack = Pack(int(WINDOW_SECONDS * SAMPLE_RATE))
        self._pending: deque[_Pending] = deque()
        self._speculation: tuple[int, int, concurrent.futures.Future[Decoded]] | None = None  # (from, to, result)

    def feed(self, pcm: bytes) -> list[EngineEvent]:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        now = time.monotonic()
        if self._end() == 0:
            self._wall_start = now
        self._buffer = np.concatenate([self._buffer, samples])
        audio_seconds, wall_seconds = self._end() / SAMPLE_RATE, now - self._wall_start
        self._is_file = audio_seconds - wall_seconds > FILE_AHEAD
        events: list[EngineEvent] = []
        for probability in self._vad(samples):
            events.extend(self._frame(float(probability)))
            self._scored += StreamingVad.FRAME
        self._least_lag = min(self._least_lag, wall_seconds - audio_seconds)
        # A file's finals come back as their packs are decoded.  One pack decodes while the next fills;
        # a pack goes when full (28 s), so where packs begin depends on the audio alone, not on the
        # machine's speed: the same file gives the same words at any pace.  At the stop, drain() sends
        # each pack's finals as it is decoded.  A client that slows to real time has its packed
        # utterances sent now.
        events.extend(self._collect(keep=PACKS_IN_FLIGHT))
        if not self._is_file:
            self._submit_pack()
        if not self._in_speech:
            self._trim(self._scored - self.pad_samples)  # only what a next utterance's padding needs
        elif self.partials and not events and self._partial_due(audio_seconds, wall_seconds):
            events.extend(self._partial())
        return events

    def flush(self) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        while (step := self.drain()) is not None:
            events.extend(step)
        self.reset()
        return events

    def drain(self) -> list[EngineEvent] | None:
        """The end of the stream, one decode at a time: the finals of the next one, or None when all are out.

        The server sends each step's finals as they come (a file's last packs take seconds), then
        calls :meth:`flush`, which returns what is left.
        """
        events: list[EngineEvent] = []
        pending = self._vad.pending()
        if pending:  # the last part-frame: scored padded with silence
            for probability in self._vad(np.zeros(StreamingVad.FRAME - pending, dtype=np.float32)):
                events.extend(self._frame(float(probability), last=True))
        if self._in_speech:
            speech_end = self._quiet_since if self._quiet_since is not None else self._end()
            self._is_file = bool(self._pending or self._pack.pieces)  # after packs, the last one joins them
            events.extend(self._final(speech_end, self._end()))
        self._submit_pack()
        if not self._pending:
            return events or None
        return events + self._collect(keep=len(self._pending) - 1)

    # ---------------------------------------------------------------- cutting
    def _end(self) -> int:
        return self._buffer_start + len(self._buffer)

    def _frame(self, probability: float, *, last: bool = False) -> list[EngineEvent]:
        start = self._scored
        end = min(start + StreamingVad.FRAME, self._end()) if last else start + StreamingVad.FRAME
        if not self._in_speech:
            if probability >= self.threshold:
                self._in_speech = True
                self._utt_start = start
                self._decode_from = max(self._buffer_start, start - self.pad_samples)
                self._quiet_since = None
                self._scores = [(start, probability)]
                self._partial_at = start
                self._last_partial = ""
                self._trim(self._decode_from)
            return []
        self._scores.append((start, probability))
        if probability >= self.threshold:
            self._quiet_since = None
            self._drop_speculation()  # the speech resumed: the final it guessed is not the final
        elif probability < self.neg_threshold:
            if self._quiet_since is None:
                self._quiet_since = start
            if end - self._quiet_since >= self.silence_samples:
                return self._final(self._quiet_since, min(self._quiet_since + self.pad_samples, end))
            self._maybe_speculate(end)
        if end - self._decode_from >= self.max_samples:
            return self._forced_cut(end)
        return []

    def _forced_cut(self, end: int) -> list[EngineEvent]:
        """Cut continuous speech where the VAD found it least like speech in its second half: between words."""
        half = self._decode_from + self.max_samples // 2
        candidates = [(p, frame) for frame, p in self._scores if frame > half]
        cut = min(candidates)[1] if candidates else end
        self._drop_speculation()
        events = self._final(cut, cut, keep_going=True)
        self._utt_start = self._decode_from = cut
        self._scores = [(frame, p) for frame, p in self._scores if frame >= cut]
        self._partial_at = cut
        self._trim(cut)
        return events

    def _final(self, speech_end: int, decode_end: int, *, keep_going: bool = False) -> list[EngineEvent]:
        speech_start = self._utt_start
        self._in_speech = keep_going
        self._quiet_since = None
        previous_partial, self._last_partial = self._last_partial, ""
        speculation, self._speculation = self._speculation, None
        if speech_end - speech_start < self.min_samples and not previous_partial:
            if speculation is not None:
                speculation[2].cancel()
            return []  # a click or a cough: never decoded, never shown
        piece = Piece(self._audio(self._decode_from, decode_end).copy(), speech_start / SAMPLE_RATE,
                      speech_end / SAMPLE_RATE, previous_partial, audio_start=self._decode_from / SAMPLE_RATE)
        # Translation decodes each utterance alone: packed (decoded with timestamps), base's translation
        # of the Indonesian fixtures degenerated into repetition ("The story of the story of the").
        if self._is_file and self._session_options.task == "transcribe":
            if not self._pack.fits(piece):
                self._submit_pack()
            self._pack.pieces.append(piece)
            return []
        self._submit_pack()  # packed utterances before this one keep their place
        if speculation is not None and speculation[0] == self._decode_from:
            result = speculation[2]  # the silence lasted: the speculative decode is this final's
        else:
            if speculation is not None:
                speculation[2].cancel()
            result = self.decoder.submit(self._window(piece.audio, Priority.FINAL))
        self._pending.append(_Pending(result, [piece]))
        return self._collect(keep=0)

    def _maybe_speculate(self, end: int) -> None:
        """Live, after ``speculate`` s of silence: start the final's decode before the silence completes."""
        if (self.speculate_samples is None or self._speculation is not None or self._is_file
                or self._quiet_since is None or end - self._quiet_since < self.speculate_samples):
            return
        speech_end = self._quiet_since
        if speech_end - self._utt_start < self.min_samples and not self._last_partial:
            return
        decode_end = min(speech_end + self.pad_samples, end)
        audio = self._audio(self._decode_from, decode_end).copy()
        self._speculation = (self._decode_from, decode_end, self.decoder.submit(self._window(audio, Priority.FINAL)))

    def _drop_speculation(self) -> None:
        speculation, self._speculation = getattr(self, "_speculation", None), None
        if speculation is not None:
            speculation[2].cancel()  # unstarted: never decoded; started: its result is never read

    def _submit_pack(self) -> None:
        if not self._pack.pieces:
            return
        pack, self._pack = self._pack, Pack(self._pack.limit)
        window = self._window(pack.audio(), Priority.PACK, bounds=tuple(pack.bounds(SAMPLE_RATE)),
                              encoder_frames=FULL_ENCODER_FRAMES)
        self._pending.append(_Pending(self.decoder.submit(window), pack.pieces))

    def _collect(self, *, keep: int) -> list[EngineEvent]:
        """Finals of the decodes done, in the order their utterances were cut; waits until at most ``keep`` remain."""
        events: list[EngineEvent] = []
        while self._pending and (len(self._pending) > keep or self._pending[0].result.done()):
            pending = self._pending.popleft()
            decoded = pending.result.result()
            offset = 0.0  # where the piece's audio begins in the decoded window
            for k, (piece, text) in enumerate(zip(pending.pieces, decoded.texts, strict=True)):
                words = decoded.words[k] if decoded.words else ()
                at = offset
                offset += len(piece.audio) / SAMPLE_RATE
                if not _clean(text) and len(pending.pieces) > 1:
                    # Whisper skipped a packed utterance (measured: 1 of 30 on the HTS file): decode it alone.
                    alone = self.decoder.decode(self._window(piece.audio, Priority.PACK))
                    text, words, at = alone.texts[0], alone.words[0] if alone.words else (), 0.0
                # Words already shown as a partial are never lost: a final decode that finds nothing keeps them.
                timed = _on_session_clock(words, piece.audio_start - at, piece.start, piece.end) if _clean(text) else ()
                text = _clean(text) or piece.partial
                if text:
                    events.append(Final(text, piece.start, piece.end, language=decoded.language, words=timed))
        return events

    def _audio(self, start: int, end: int) -> np.ndarray:
        return self._buffer[max(0, start - self._buffer_start) : end - self._buffer_start]

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
        if self.decoder.busy() > PARTIAL_BUDGET:
            return False  # the shared model is busy (other sessions, a loaded machine): finals first
        if self._is_file:
            return False  # fed faster than real time: the finals come sooner than partials could be read
        # Audio arrives at most in real time when live, so the least lag seen is this stream's own latency;
        # lagging half a second more than that means decodes fell behind: catch up before spending on partials.
        return (wall_seconds - audio_seconds) - self._least_lag < 0.5

    def _partial(self) -> list[EngineEvent]:
        began = time.monotonic()
        self._partial_at = self._end()
        audio = self._audio(self._decode_from, self._end()).copy()
        decoded = self.decoder.decode(self._window(audio, Priority.PARTIAL))
        self._partial_wall = time.monotonic() - began
        text = _clean(decoded.texts[0])
        if not text or text == self._last_partial:
            return []
        self._last_partial = text
        return [Partial(text)]

    # ---------------------------------------------------------------- decoding
    def _window(self, audio: np.ndarray, priority: Priority, *, bounds: tuple[float, ...] | None = None,
                encoder_frames: int = SHORT_ENCODER_FRAMES) -> Window:
        languages = AUTO_LANGUAGES if self.language == "auto" else (self.language,)
        max_new_tokens = int(min(400, 24 + 12 * len(audio) / SAMPLE_RATE))
        if self._session_options.task == "translate":
            # Translation needs the whole window: with 10 s, base wrote the Indonesian fixtures out
            # phonetically ("salamat paghi apakam") instead of translating them (tests/server/test_vocabulary.py).
            encoder_frames = FULL_ENCODER_FRAMES
        # Finals carry their words' times; a partial is never timed (it is shown and replaced).
        options = self._session_options if priority != Priority.PARTIAL else replace(self._session_options, words=False)
        return Window(audio, languages, max_new_tokens, priority, bounds, encoder_frames, options)


def _clean(text: str) -> str:
    return text if any(ch.isalnum() for ch in text) else ""  # "..." or a lone "-": nothing was said


def shared_decoder(**options: object) -> Decoder:
    """The decoder the sessions of these options share (admission reads its throughput)."""
    return shared_model(str(options.get("model") or "base")).decoder


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
