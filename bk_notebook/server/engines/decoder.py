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
from typing import Any

from ...errors import MissingDependency
from ...protocol import SAMPLE_RATE
from .weights import INSTALL_HINT, model_folder

__all__ = ["ModelTurns", "SharedModel", "shared_model"]

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
        self._tokenizers: dict[str, tuple[Any, tuple[int, ...]]] = {}

    def _tokenizer(self, language: str) -> tuple[Any, tuple[int, ...]]:
        if language not in self._tokenizers:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            tokenizer = Tokenizer(self.model.hf_tokenizer, self.multilingual, task="transcribe",
                                  language=language if self.multilingual else None)
            self._tokenizers[language] = (tokenizer, tuple(get_suppressed_tokens(tokenizer, [-1])))
        return self._tokenizers[language]

    def decode(self, audio: Any, languages: tuple[str, ...], max_new_tokens: int) -> tuple[str, str]:
        """Text and language of one window (at most 30 s) of float32 audio: one encoder pass.

        With several ``languages``, the language is detected among them on the same encoder
        output (one decoder step), where ``model.transcribe`` with ``detect_language`` would
        encode the window twice.  Greedy, temperature 0, no earlier text, no timestamps.
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
        tokenizer, suppress = self._tokenizer(language)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = model.model.generate(
            encoded, [prompt], beam_size=1, max_length=min(model.max_length, len(prompt) + max_new_tokens),
            return_scores=True, return_no_speech_prob=True, suppress_blank=True, suppress_tokens=list(suppress),
        )[0]
        tokens = result.sequences_ids[0]
        average_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > self.NO_SPEECH and average_logprob <= self.LOW_LOGPROB:
            return "", language
        return tokenizer.decode(tokens).strip(), language


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
