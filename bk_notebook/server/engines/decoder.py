"""One decoder per process and model: every session's windows, decoded in batches on the one shared model.

Theory of operation
-------------------
Sessions' engines keep their VAD and cutting; they hand *windows* (float32
audio of at most 30 s) to the :class:`Decoder` and wait on a future.  One
thread per model takes the most urgent windows (live finals first, then a
file's packed utterances, then partials; in arrival order within each), up to
``batch_size`` of them, and decodes them in one batched CTranslate2 encode and
generate.  A window arriving alone waits ``gather`` seconds (a few ms) for
company; windows that arrive while a batch runs wait for the next batch
anyway, so under load batches fill by themselves (WhisperLive and
sherpa-onnx's servers batch their clients the same way).

The decoder measures itself: :meth:`Decoder.busy` is the share of the last 10
s it spent decoding, which rations partials, and :meth:`Decoder.throughput`
is how many seconds of session audio it finalises per second of work,
batches and partials included, which admission reads
(:class:`~bk_notebook.server.turns.Load`).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any

import numpy as np

from ...errors import MissingDependency
from ...protocol import SAMPLE_RATE, WordTiming
from .packing import split_by_timestamps
from .weights import INSTALL_HINT, model_folder

__all__ = ["DecodeOptions", "Decoded", "Decoder", "Priority", "SharedModel", "Window", "encoder_input", "next_batch",
           "shared_model"]

logger = logging.getLogger("bk_notebook.server")


class Priority(IntEnum):
    """Which windows a batch takes first: a live session's final, a file's pack, a partial."""

    FINAL = 0
    PACK = 1
    PARTIAL = 2


@dataclass(frozen=True)
class DecodeOptions:
    """What one decode is asked for beyond the text: word times, a vocabulary, translation."""

    words: bool = False
    prompt: str | None = None
    hotwords: str | None = None
    task: str = "transcribe"


@dataclass(frozen=True)
class Decoded:
    """A window's text (one per piece for a pack), its language, and each piece's words.

    ``words`` (one tuple per piece, when word times were asked for) are timed from the window's start.
    """

    texts: tuple[str, ...]
    language: str
    words: tuple[tuple[WordTiming, ...], ...] = ()


@dataclass(eq=False)
class Window:
    """Audio to decode, and the future its :class:`Decoded` result is set on.

    ``bounds`` makes it a pack: its pieces end at these seconds of the window, and the window is
    decoded with timestamps so that its text can be split back into its pieces.  ``encoder_frames``
    below 3000 (30 s) shortens the encoder's input to the audio plus a second, at least that many
    frames: measured one utterance at a time (``benchmarks/bench_final_encoder.py``), 1000 frames (10 s)
    decoded 2-3x faster than 3000 with no more word errors, where inputs cut to the audio's own length
    repeated sentences up to the token limit.
    """

    audio: np.ndarray
    languages: tuple[str, ...]
    max_new_tokens: int
    priority: Priority = Priority.FINAL
    bounds: tuple[float, ...] | None = None
    encoder_frames: int = 3000
    options: DecodeOptions = DecodeOptions()
    arrival: int = 0
    result: concurrent.futures.Future[Decoded] = field(default_factory=concurrent.futures.Future)

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def next_batch(waiting: Sequence[Window], size: int) -> list[Window]:
    """The ``size`` most urgent windows: by priority, then by arrival."""
    return sorted(waiting, key=lambda w: (w.priority, w.arrival))[:size]


def encoder_input(windows: Sequence[Window], frames: Sequence[int], limit: int = 3000) -> int:
    """Mel frames of one call's encoder input: the longest its windows ask for, never past ``limit`` (30 s).

    A window asks for its ``encoder_frames``, or its audio's ``frames`` and a second (100 frames) when longer.
    """
    return max(min(limit, max(w.encoder_frames, n + 100)) for w, n in zip(windows, frames, strict=True))


class Decoder:
    """The batching decoder of one model (see the module's docstring).

    Parameters
    ----------
    decode_batch : callable
        Decodes a list of windows at once, returning one :class:`Decoded` per window, in order.
    batch_size : int
        Most windows per call.
    gather : float
        Seconds a lone window waits for others before its batch starts.
    """

    BUSY_WINDOW = 10.0  # seconds over which busy() measures the share of time spent decoding
    THROUGHPUT_WINDOW = 30.0  # seconds over which throughput() is measured
    THROUGHPUT_MIN_BUSY = 1.0  # less decoding than this says too little about the rate

    def __init__(self, decode_batch: Callable[[list[Window]], list[Decoded]], batch_size: int = 4,
                 gather: float = 0.005) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.decode_batch = decode_batch
        self.batch_size = batch_size
        self.gather = gather
        self._ready = threading.Condition()
        self._waiting: list[Window] = []
        self._arrivals = itertools.count()
        self._thread: threading.Thread | None = None
        self._running = False  # a batch is being decoded
        # (start, end, audio finalised, share of the batch's windows that were not partials) of recent batches
        self._recent: deque[tuple[float, float, float, float]] = deque()

    # ------------------------------------------------------------------ callers
    def submit(self, window: Window) -> concurrent.futures.Future[Decoded]:
        """Queue ``window``; its future is set once its batch is decoded (cancel it to drop it unstarted)."""
        with self._ready:
            window.arrival = next(self._arrivals)
            self._waiting.append(window)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="bk-decoder", daemon=True)
                self._thread.start()
            self._ready.notify_all()
        return window.result

    def decode(self, window: Window) -> Decoded:
        """Queue ``window`` and wait for its result."""
        return self.submit(window).result()

    @property
    def waiting(self) -> int:
        with self._ready:
            return len(self._waiting)

    def busy(self) -> float:
        """The share of the last ``BUSY_WINDOW`` seconds spent decoding (waiting windows excluded)."""
        now = time.monotonic()
        with self._ready:
            spent = sum(end - max(start, now - self.BUSY_WINDOW) for start, end, _, _ in self._recent
                        if end > now - self.BUSY_WINDOW)
        return spent / self.BUSY_WINDOW

    def throughput(self) -> float | None:
        """Seconds of audio finalised per second spent finalising, over the last ``THROUGHPUT_WINDOW`` s.

        A batch's time counts in the share of its windows that were finals or packs: partials are
        rationed (none while the decoder is busy more than half the time), so they do not hold
        capacity a live session's finals need.  None until ``THROUGHPUT_MIN_BUSY`` s were measured.
        """
        now = time.monotonic()
        with self._ready:
            recent = [(e - s) * share for s, e, _, share in self._recent if e > now - self.THROUGHPUT_WINDOW]
            audio = sum(a for _, e, a, _ in self._recent if e > now - self.THROUGHPUT_WINDOW)
        spent = sum(recent)
        if spent < self.THROUGHPUT_MIN_BUSY:
            return None
        return audio / spent

    # ------------------------------------------------------------------ the thread
    def _take(self) -> list[Window]:
        with self._ready:
            while not self._waiting:
                self._ready.wait()
            if len(self._waiting) < self.batch_size and self.gather > 0:
                self._ready.wait(self.gather)  # company for a lone window: requests within a few ms share a batch
            batch = next_batch(self._waiting, self.batch_size)
            for window in batch:
                self._waiting.remove(window)
            self._running = True
        return [w for w in batch if w.result.set_running_or_notify_cancel()]  # dropped ones are skipped

    def _serve(self) -> None:
        while True:
            batch = self._take()
            began = time.monotonic()
            try:
                results = self.decode_batch(batch) if batch else []
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                for window in batch:
                    window.result.set_exception(exc)
            else:
                for window, result in zip(batch, results, strict=True):
                    window.result.set_result(result)
            finished = time.monotonic()
            with self._ready:
                self._running = False
                if batch:
                    finals = [w for w in batch if w.priority != Priority.PARTIAL]
                    self._recent.append((began, finished, sum(w.seconds for w in finals), len(finals) / len(batch)))
                while self._recent and self._recent[0][1] < finished - max(self.BUSY_WINDOW, self.THROUGHPUT_WINDOW):
                    self._recent.popleft()


class SharedModel:
    """One loaded WhisperModel, its batched decode, and the :class:`Decoder` every session hands windows to."""

    NO_SPEECH = 0.6  # faster-whisper's defaults: a window likely without speech and decoded with low
    LOW_LOGPROB = -1.0  # confidence gives no text

    def __init__(self, name: str, model: Any, load_seconds: float, batch_size: int = 4) -> None:
        self.name = name
        self.model = model
        self.load_seconds = load_seconds
        self.multilingual = bool(model.model.is_multilingual)
        self.decoder = Decoder(self.decode_batch, batch_size=batch_size)
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
               options: DecodeOptions = DecodeOptions()) -> tuple[str, str]:
        """Text and language of one window, decoded now, alone (the model's warm-up, tests)."""
        window = Window(np.asarray(audio, dtype=np.float32), languages, max_new_tokens, options=options)
        result = self.decode_batch([window])[0]
        return result.texts[0], result.language

    def decode_batch(self, windows: list[Window]) -> list[Decoded]:
        """Decode windows (each at most 30 s of float32 audio) together: packs in one call, the rest in another.

        Greedy, temperature 0, no earlier text.  With several ``languages``, a window's language
        is detected among them on the same encoder output (one decoder step), where
        ``model.transcribe`` with ``detect_language`` would encode the window twice.  Packs are
        decoded with timestamps (CTranslate2 applies Whisper's timestamp rules to a whole call),
        the rest without.  Windows with other options (a session's own prompt, translation) are
        decoded in a call of their own: one call shares one prompt layout.
        """
        results: dict[int, Decoded] = {}
        groups: dict[tuple[bool, DecodeOptions], list[int]] = {}
        for i, window in enumerate(windows):
            groups.setdefault((window.bounds is not None, replace(window.options, words=False)), []).append(i)
        for (timed, _), members in groups.items():
            decoded = self._decode_group([windows[i] for i in members], timed=timed)
            results.update(zip(members, decoded, strict=True))
        return [results[i] for i in range(len(windows))]

    def _decode_group(self, windows: list[Window], *, timed: bool) -> list[Decoded]:
        from faster_whisper.audio import pad_or_trim

        model = self.model
        extractor = model.feature_extractor
        features = [extractor(w.audio) for w in windows]
        frames = [min(extractor.nb_max_frames, f.shape[-1] - 1) for f in features]
        length = encoder_input(windows, frames, extractor.nb_max_frames)
        encoded = model.encode(np.stack([pad_or_trim(f[:, :n], length) for f, n in zip(features, frames, strict=True)]))
        languages = [w.languages[0] if self.multilingual else "en" for w in windows]
        if self.multilingual and any(len(w.languages) > 1 for w in windows):
            ranked = model.model.detect_language(encoded)  # per window: [("<|en|>", p), ...], most likely first
            for i, window in enumerate(windows):
                if len(window.languages) > 1:
                    languages[i] = next((token[2:-2] for token, _ in ranked[i] if token[2:-2] in window.languages),
                                        languages[i])
        options = windows[0].options  # one group, one vocabulary and task (decode_batch)
        task = options.task if self.multilingual else "transcribe"
        tokenizers = [self._tokenizer(language, task) for language in languages]
        prompts = [[*self._context(t, options), *t.sot_sequence, *([] if timed else [t.no_timestamps])]
                   for t, _ in tokenizers]
        longest = max(len(p) + w.max_new_tokens for p, w in zip(prompts, windows, strict=True))
        outputs = model.model.generate(
            encoded, prompts, beam_size=1, max_length=min(model.max_length, longest), return_scores=True,
            return_no_speech_prob=True, suppress_blank=True, suppress_tokens=list(tokenizers[0][1]),
        )
        decoded = []
        for i, (w, out, (tokenizer, _), language) in enumerate(zip(windows, outputs, tokenizers, languages,
                                                                    strict=True)):
            pieces = self._pieces(w, out, tokenizer)
            if pieces is None:
                decoded.append(Decoded(("",) * (1 if w.bounds is None else len(w.bounds)), language))
            elif w.options.words:
                decoded.append(self._timed(pieces, tokenizer, language, encoded, i, frames[i]))
            else:
                decoded.append(Decoded(tuple(tokenizer.decode(p).strip() for p in pieces), language))
        return decoded

    def _pieces(self, window: Window, output: Any, tokenizer: Any) -> list[list[int]] | None:
        """Each piece's text tokens (one piece unless a pack), or None for a window without speech."""
        tokens = output.sequences_ids[0]
        average_logprob = output.scores[0] * len(tokens) / (len(tokens) + 1)
        if output.no_speech_prob > self.NO_SPEECH and average_logprob <= self.LOW_LOGPROB:
            return None
        if window.bounds is None:
            return [[t for t in tokens[:window.max_new_tokens] if t < tokenizer.eot]]
        split = split_by_timestamps(tokens, tokenizer.timestamp_begin, window.bounds)
        return [[t for t in piece if t < tokenizer.eot] for piece in split]

    def _timed(self, pieces: list[list[int]], tokenizer: Any, language: str, encoded: Any, index: int,
               frames: int) -> Decoded:
        """Pieces' texts as their aligned words: one alignment over the window, words dealt back by token count."""
        words = self._words(tokenizer, [t for piece in pieces for t in piece], encoded, index, frames)
        if not words:  # nothing aligned (no text tokens): the text as decoded, untimed
            return Decoded(tuple(tokenizer.decode(p).strip() for p in pieces), language)
        dealt: list[list[WordTiming]] = [[] for _ in pieces]
        piece, used = 0, 0
        for word, count in words:
            while piece < len(pieces) - 1 and used >= len(pieces[piece]):
                piece, used = piece + 1, used - len(pieces[piece])
            dealt[piece].append(word)
            used += count
        return Decoded(tuple(" ".join(w.text for w in ws) for ws in dealt), language, tuple(tuple(ws) for ws in dealt))

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

    def _words(self, tokenizer: Any, tokens: list[int], encoded: Any, index: int,
               frames: int) -> list[tuple[WordTiming, int]]:
        """The tokens' words (with how many tokens each took), timed by the cross-attention alignment.

        Seconds from the window's start, as faster-whisper's ``word_timestamps``; ``index`` picks the
        window's encoder output out of its batch.
        """
        import ctranslate2
        from faster_whisper.transcribe import merge_punctuations

        if not tokens:
            return []
        if encoded.shape[0] > 1:
            encoded = ctranslate2.StorageView.from_array(np.array(encoded)[index:index + 1])
        alignment = self.model.find_alignment(tokenizer, [tokens], encoded, frames)[0]
        merge_punctuations(alignment, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
        words = []
        for item in alignment:
            text = item["word"].strip()
            count = len(item["tokens"])
            if text:  # merged punctuation leaves an empty word behind
                words.append((WordTiming(text, float(item["start"]), float(item["end"]), float(item["probability"])),
                              count))
            elif words:
                words[-1] = (words[-1][0], words[-1][1] + count)
        return words


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
        shared = SharedModel(model, loaded, 0.0)
        shared.decode(np.zeros(SAMPLE_RATE, dtype=np.float32), ("en",), 4)  # the first decode costs ~1 s more: now
        shared.load_seconds = time.perf_counter() - began
        logger.info("whisper model %s loaded in %.1f s (%s, int8, %d threads)", model, shared.load_seconds, folder,
                    threads)
        _shared[model] = shared
        return shared
