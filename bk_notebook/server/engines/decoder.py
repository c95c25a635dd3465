"""The process's one Whisper model per name, shared by every session, and the turns they take on it."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from ...errors import MissingDependency
from ...protocol import SAMPLE_RATE, WordTiming
from .weights import INSTALL_HINT, model_folder

__all__ = ["DecodeOptions", "Decoded", "ModelTurns", "SharedModel", "shared_model"]

logger = logging.getLogger("bk_notebook.server")


class ModelTurns:
    """Whose decode runs next on a shared model: finals first, then first come, first served.

    The second of two turn layers.  The server's :class:`~bk_notebook.server.turns.DecodeTurns` bound how many
    engine calls run at once, whatever the engine; a call into a Whisper engine then waits here
    for the one model its process shares, which decodes one window at a time.

    A session's engine call waits for its own decode, so each session has at most one
    request waiting: first come, first served is then round-robin, and one session's
    backlog delays another session's next decode by at most one decode.  CTranslate2
    already uses every core for one decode (``cpu_threads``), so decodes run one at a time.
    """

    BUSY_WINDOW = 10.0  # seconds over which busy() measures how much of the time the model decoded

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._waiting: list[tuple[int, int]] = []  # a heap of (0 final / 1 partial, arrival)
        self._arrivals = itertools.count()
        self._busy = False
        self._recent: deque[tuple[float, float]] = deque()  # (start, end) of the turns of the last BUSY_WINDOW s

    def busy(self) -> float:
        """The share of the last ``BUSY_WINDOW`` seconds the model spent decoding (waiting callers excluded)."""
        now = time.monotonic()
        with self._ready:
            while self._recent and self._recent[0][1] < now - self.BUSY_WINDOW:
                self._recent.popleft()
            spent = sum(end - max(start, now - self.BUSY_WINDOW) for start, end in self._recent)
        return spent / self.BUSY_WINDOW

    @contextlib.contextmanager
    def turn(self, *, final: bool) -> Iterator[None]:
        """Wait for this caller's turn, hold it for the ``with`` block."""
        mine = (0 if final else 1, next(self._arrivals))
        with self._ready:
            heapq.heappush(self._waiting, mine)
            while self._busy or self._waiting[0] != mine:
                self._ready.wait()
            heapq.heappop(self._waiting)
            self._busy = True
        began = time.monotonic()
        try:
            yield
        finally:
            with self._ready:
                self._recent.append((began, time.monotonic()))
                self._busy = False
                self._ready.notify_all()


@dataclass(frozen=True)
class DecodeOptions:
    """What one decode is asked for beyond the text: word times, a vocabulary, translation."""

    words: bool = False
    prompt: str | None = None
    hotwords: str | None = None
    task: str = "transcribe"


class Decoded(NamedTuple):
    """One window's result; ``words`` are timed from the window's start."""

    text: str
    language: str
    words: tuple[WordTiming, ...] = ()


class SharedModel:
    """One loaded WhisperModel, the turns of the sessions that decode with it, and its one-window decode."""

    NO_SPEECH = 0.6  # faster-whisper's defaults: a window likely without speech and decoded with low
    LOW_LOGPROB = -1.0  # confidence gives no text

    def __init__(self, name: str, model: Any, load_seconds: float) -> None:
        self.name = name
        self.model = model
        self.load_seconds = load_seconds
        self.multilingual = bool(model.model.is_multilingual)
        self.turns = ModelTurns()
        self._tokenizers: dict[tuple[str, str], tuple[Any, tuple[int, ...]]] = {}

    def _tokenizer(self, language: str, task: str = "transcribe") -> tuple[Any, tuple[int, ...]]:
        if (language, task) not in self._tokenizers:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            tokenizer = Tokenizer(self.model.hf_tokenizer, self.multilingual, task=task,
                                  language=language if self.multilingual else None)
            self._tokenizers[(language, task)] = (tokenizer, tuple(get_suppressed_tokens(tokenizer, [-1])))
        return self._tokenizers[(language, task)]

    def decode(self, audio: Any, languages: tuple[str, ...], max_new_tokens: int,
               options: DecodeOptions = DecodeOptions()) -> Decoded:
        """Text and language of one window (at most 30 s) of float32 audio: one encoder pass.

        With several ``languages``, the language is detected among them on the same encoder
        output (one decoder step), where ``model.transcribe`` with ``detect_language`` would
        encode the window twice.  Greedy, temperature 0, no earlier text, no timestamp tokens;
        ``options`` add a vocabulary prompt, translation, and word times (cross-attention
        alignment on the same encoder output, as faster-whisper's ``word_timestamps``).
        Callers hold a turn (:meth:`ModelTurns.turn`).
        """
        from faster_whisper.audio import pad_or_trim

        model = self.model
        features = model.feature_extractor(audio)
        frames = min(model.feature_extractor.nb_max_frames, features.shape[-1] - 1)
        encoded = model.encode(pad_or_trim(features[:, :frames]))
        language = languages[0] if self.multilingual else "en"
        if self.multilingual and len(languages) > 1:
            ranked = model.model.detect_language(encoded)[0]  # [("<|en|>", p), ...], most likely first
            language = next((token[2:-2] for token, _ in ranked if token[2:-2] in languages), language)
        tokenizer, suppress = self._tokenizer(language, options.task if self.multilingual else "transcribe")
        prompt = [*self._context(tokenizer, options), *tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = model.model.generate(
            encoded, [prompt], beam_size=1, max_length=min(model.max_length, len(prompt) + max_new_tokens),
            return_scores=True, return_no_speech_prob=True, suppress_blank=True, suppress_tokens=list(suppress),
        )[0]
        ids = result.sequences_ids[0]
        average_logprob = result.scores[0] * len(ids) / (len(ids) + 1)
        tokens = [t for t in ids if t < tokenizer.eot]  # text tokens only: the alignment takes nothing else
        if result.no_speech_prob > self.NO_SPEECH and average_logprob <= self.LOW_LOGPROB:
            return Decoded("", language)
        if not options.words:
            return Decoded(tokenizer.decode(tokens).strip(), language)
        words = self._words(tokenizer, tokens, encoded, frames)
        if not words:  # nothing aligned (no text tokens): the text as decoded, untimed
            return Decoded(tokenizer.decode(tokens).strip(), language)
        return Decoded(" ".join(w.text for w in words), language, words)

    def _context(self, tokenizer: Any, options: DecodeOptions) -> list[int]:
        """The previous-text section before the prompt proper: hotwords, then the initial prompt.

        The same layout as faster-whisper's ``hotwords`` and ``initial_prompt`` (each capped so the
        section stays under half of Whisper's 448-token context).
        """
        context: list[int] = []
        for text in (options.hotwords, options.prompt):
            if text and text.strip():
                context.extend(tokenizer.encode(" " + text.strip()))
        if not context:
            return []
        return [tokenizer.sot_prev, *context[-(self.model.max_length // 2 - 1):]]

    def _words(self, tokenizer: Any, tokens: list[int], encoded: Any, frames: int) -> tuple[WordTiming, ...]:
        """The decoded tokens' words, timed by the cross-attention alignment (seconds from the window's start)."""
        from faster_whisper.transcribe import merge_punctuations

        if not tokens:
            return ()
        alignment = self.model.find_alignment(tokenizer, [tokens], encoded, frames)[0]
        merge_punctuations(alignment, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
        words = []
        for item in alignment:
            text = item["word"].strip()
            if text:  # merged punctuation leaves an empty word behind
                words.append(WordTiming(text, float(item["start"]), float(item["end"]), float(item["probability"])))
        return tuple(words)


_shared: dict[str, SharedModel] = {}
_shared_lock = threading.Lock()  # held while loading: sessions starting together wait for one load


def shared_model(model: str = "base", cpu_threads: int | None = None) -> SharedModel:
    """The process's one model for ``model``, loaded (and warmed with one decode) on first use."""
    with _shared_lock:
        if model in _shared:
            return _shared[model]
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise MissingDependency(f"the whisper engine needs faster-whisper: {INSTALL_HINT}") from exc
        quiet = logging.getLogger("faster_whisper")
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)  # it logs every decode's duration at INFO
        began = time.perf_counter()
        folder = model_folder(model)
        threads = cpu_threads or min(4, os.cpu_count() or 1)
        loaded = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads,
                              local_files_only=True)
        import numpy as np

        shared = SharedModel(model, loaded, 0.0)
        shared.decode(np.zeros(SAMPLE_RATE, dtype=np.float32), ("en",), 4)  # the first decode costs ~1 s more: now
        shared.load_seconds = time.perf_counter() - began
        logger.info("whisper model %s loaded in %.1f s (%s, int8, %d threads)", model, shared.load_seconds, folder,
                    threads)
        _shared[model] = shared
        return shared
