"""PocketSphinx (US English, its model inside the wheel): Endpointer-cut utterances."""

from __future__ import annotations

from collections.abc import Callable

from ...errors import UsageError, missing_extra
from ...protocol import SAMPLE_RATE, Final, Partial
from .base import Engine, EngineEvent

__all__ = ["PocketSphinxEngine", "factory"]


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


def factory(*, preload: bool = True, **options: object) -> Callable[[], Engine]:
    """A constructor of PocketSphinx engines; raises MissingDependency now if it is not installed."""
    try:
        import pocketsphinx  # noqa: F401
    except ImportError as exc:
        raise missing_extra("the pocketsphinx engine", "pocketsphinx", "server", exc) from exc
    return lambda: PocketSphinxEngine(**options)  # type: ignore[arg-type]
