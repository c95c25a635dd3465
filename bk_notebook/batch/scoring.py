"""Word and character error rates per item and for the corpus, with jiwer.

The alignment is jiwer's (Levenshtein over words, and over characters); this
module only normalises the text, in a stated and configurable way, and lays
the counts out one row per item.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import UsageError, missing_extra

__all__ = ["Normaliser", "evaluate", "evaluation_libraries", "number_to_words"]

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))


def number_to_words(n: int) -> str:
    """An English reading of a whole number: ``42`` -> ``"forty two"`` (no "and", no hyphens)."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in _SCALES:
        if n >= size:
            head, rest = divmod(n, size)
            return f"{number_to_words(head)} {name}" + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")  # pragma: no cover


class Normaliser:
    """The text normalisation applied to references and hypotheses alike, before scoring.

    Parameters
    ----------
    lowercase : bool
        Fold case (``"Hello"`` equals ``"hello"``).
    punctuation : bool
        Remove punctuation (every Unicode ``P*`` character), keeping apostrophes
        inside words (``"don't"``), and hyphens become spaces.
    numbers : {"keep", "words"}
        ``"words"``: whole numbers written in digits are spelt out in English
        (``"42"`` -> ``"forty two"``), so ``"7"`` and ``"seven"`` match.
    """

    def __init__(self, lowercase: bool = True, punctuation: bool = True, numbers: str = "keep") -> None:
        if numbers not in ("keep", "words"):
            raise UsageError(f"numbers must be 'keep' or 'words', got {numbers!r}")
        self.lowercase, self.punctuation, self.numbers = lowercase, punctuation, numbers

    def __call__(self, text: str) -> str:
        text = unicodedata.normalize("NFKC", text)
        if self.numbers == "words":
            text = re.sub(r"\d+", lambda m: f" {number_to_words(int(m.group()))} ", text)
        if self.lowercase:
            text = text.lower()
        if self.punctuation:
            text = text.replace("-", " ")
            text = "".join(" " if unicodedata.category(c).startswith("P") and c != "'" else c for c in text)
            text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)  # quotes, not apostrophes inside words
        return " ".join(text.split())

    def __repr__(self) -> str:
        return f"Normaliser(lowercase={self.lowercase}, punctuation={self.punctuation}, numbers={self.numbers!r})"


def _texts(values: Any, what: str) -> list[Any]:
    if isinstance(values, str):
        raise UsageError(f"{what} must be a sequence of texts, got one string")
    if hasattr(values, "columns"):  # a DataFrame, e.g. transcribe_many's result
        if "text" not in values.columns:
            raise UsageError(f"{what} is a DataFrame without a 'text' column")
        values = values["text"]
    return list(values)


def _hypothesis(value: Any) -> str | None:
    """A hypothesis text; None for a missing one (a failed item, NaN)."""
    if value is None or isinstance(value, BaseException) or (isinstance(value, float) and value != value):
        transcript = getattr(value, "transcript", None)  # a failure that kept some finals
        return None if transcript is None else transcript.text
    if hasattr(value, "finals") and hasattr(value, "text"):
        return str(value.text)
    if not isinstance(value, str):
        raise UsageError(f"a hypothesis must be a str or a Transcript, got {type(value).__name__}")
    return value


def _word_edits(chunks: list[Any], ref: list[str], hyp: list[str]) -> list[tuple[str, str, str]]:
    """The alignment chunks of jiwer as one ``(kind, reference word, hypothesis word)`` per word."""
    edits: list[tuple[str, str, str]] = []
    for chunk in chunks:
        r, h = ref[chunk.ref_start_idx:chunk.ref_end_idx], hyp[chunk.hyp_start_idx:chunk.hyp_end_idx]
        if chunk.type == "substitute":  # jiwer's substitution chunks pair words one to one
            edits.extend(("substitute", a, b) for a, b in zip(r, h, strict=True))
        elif chunk.type == "delete":
            edits.extend(("delete", a, "") for a in r)
        elif chunk.type == "insert":
            edits.extend(("insert", "", b) for b in h)
    return edits


def evaluate(
    hypotheses: Any,
    references: Any,
    *,
    lowercase: bool = True,
    punctuation: bool = True,
    numbers: str = "keep",
    normalise: Callable[[str], str] | None = None,
    ids: Sequence[Any] | None = None,
) -> Any:
    """Score hypotheses against references: WER and CER per item and for the corpus.

    Parameters
    ----------
    hypotheses : sequence or DataFrame
        Texts, :class:`Transcript` objects, or exceptions/None for failed items (scored as
        an empty hypothesis, flagged in ``missing``); or ``transcribe_many``'s DataFrame
        (its ``text`` column).
    references : sequence or str
        Reference texts in the same order; or, when ``hypotheses`` is a DataFrame, the
        name of its reference column.
    lowercase, punctuation, numbers
        The normalisation (see :class:`Normaliser`): by default case is folded and
        punctuation removed; numbers are kept as written.
    normalise : callable, optional
        Replaces the normalisation entirely: ``str -> str``, applied to both sides.
    ids : sequence, optional
        An ``id`` column for the result (default: the DataFrame's index, else 0..n-1).

    Returns
    -------
    pandas.DataFrame
        One row per item, in input order: ``reference`` and ``hypothesis`` (normalised),
        ``wer``, ``cer``, ``substitutions``, ``deletions``, ``insertions``, ``hits``,
        ``ref_words``, ``char_errors``, ``ref_chars``, ``missing`` and ``edits`` (one
        ``(kind, reference word, hypothesis word)`` tuple per word error, for error analysis).
        ``.attrs["corpus"]`` holds the corpus totals: ``wer`` and ``cer`` (all errors over
        all reference words or characters, so long items weigh more), the summed counts and
        ``items``; ``.attrs["normalisation"]`` says how the texts were normalised.
        An empty reference scores 0 when the hypothesis is empty too, else (jiwer's
        convention) the number of inserted words or characters.
    """
    jiwer, pd = evaluation_libraries()
    hyps, refs, index = _paired_texts(hypotheses, references)
    normaliser, described = _chosen_normaliser(lowercase, punctuation, numbers, normalise)
    rows = [_score_item(jiwer, normaliser, ref, hyp) for ref, hyp in zip(refs, hyps, strict=True)]
    scores = pd.DataFrame(rows, columns=_SCORE_COLUMNS)
    if ids is not None:
        scores.insert(0, "id", list(ids))
    elif index is not None:
        scores.index = index
    scores.attrs["corpus"] = _corpus_totals(scores)
    scores.attrs["normalisation"] = described
    return scores


def evaluation_libraries() -> tuple[Any, Any]:
    """The jiwer and pandas modules, or the error that names the extra to install."""
    try:
        import jiwer
        import pandas as pd
    except ImportError as exc:
        raise missing_extra("evaluate", "jiwer and pandas", "eval", exc) from exc
    return jiwer, pd


def _paired_texts(hypotheses: Any, references: Any) -> tuple[list[str | None], list[str], list[Any] | None]:
    """The hypotheses (None for a missing one) and references, checked to pair up; the pandas index, if any."""
    index = None
    if isinstance(references, str):
        if not hasattr(hypotheses, "columns") or references not in hypotheses.columns:
            raise UsageError(f"references={references!r} names a column, but hypotheses has no such column")
        references = hypotheses[references]
    if type(hypotheses).__module__.startswith("pandas"):  # a DataFrame or Series keeps its index
        index = list(hypotheses.index)
    hyps = [_hypothesis(h) for h in _texts(hypotheses, "hypotheses")]
    refs = _texts(references, "references")
    if len(hyps) != len(refs):
        raise UsageError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not all(isinstance(r, str) for r in refs):
        raise UsageError("every reference must be a str")
    return hyps, refs, index


def _chosen_normaliser(lowercase: bool, punctuation: bool, numbers: str,
                       normalise: Callable[[str], str] | None) -> tuple[Callable[[str], str], str]:
    """The normalisation to apply, and how ``.attrs["normalisation"]`` describes it."""
    if normalise is None:
        normaliser = Normaliser(lowercase, punctuation, numbers)
        return normaliser, repr(normaliser)
    return normalise, f"custom: {getattr(normalise, '__name__', repr(normalise))}"


_SCORE_COLUMNS = ["reference", "hypothesis", "wer", "cer", "substitutions", "deletions", "insertions", "hits",
                  "ref_words", "char_errors", "ref_chars", "missing", "edits"]  # evaluate's columns, in order


def _score_item(jiwer: Any, normaliser: Callable[[str], str], ref: str, hyp: str | None) -> dict[str, Any]:
    """One row of :func:`evaluate`: the normalised texts, their rates and counts, and the word edits."""
    r, h = normaliser(ref), normaliser(hyp or "")
    words = jiwer.process_words(r, h)
    chars = jiwer.process_characters(r, h)
    rw, hw = r.split(), h.split()
    return {
        "reference": r, "hypothesis": h, "wer": float(words.wer), "cer": float(chars.cer),
        "substitutions": words.substitutions, "deletions": words.deletions, "insertions": words.insertions,
        "hits": words.hits, "ref_words": len(rw),
        "char_errors": chars.substitutions + chars.deletions + chars.insertions,
        "ref_chars": chars.substitutions + chars.deletions + chars.hits,
        "missing": hyp is None, "edits": _word_edits(words.alignments[0], rw, hw),
    }


def _corpus_totals(scores: Any) -> dict[str, Any]:
    """All errors over all reference words (or characters): long items weigh more than in a mean of rates."""
    errors = int(scores[["substitutions", "deletions", "insertions"]].to_numpy().sum())
    words_total, chars_total = int(scores["ref_words"].sum()), int(scores["ref_chars"].sum())
    char_errors = int(scores["char_errors"].sum())
    return {
        "wer": errors / words_total if words_total else float(errors),
        "cer": char_errors / chars_total if chars_total else float(char_errors),
        "substitutions": int(scores["substitutions"].sum()), "deletions": int(scores["deletions"].sum()),
        "insertions": int(scores["insertions"].sum()), "ref_words": words_total, "ref_chars": chars_total,
        "items": len(scores), "missing": int(scores["missing"].sum()),
    }
