"""Where a transcript went wrong: a reference and a hypothesis aligned word by word, for people to read.

The alignment is jiwer's, after the same normalisation as :func:`~bk_notebook.evaluate`, so the errors
shown are exactly the errors counted.  An :class:`Alignment` draws itself as two aligned rows (the
reference above the hypothesis) with each error marked: coloured HTML in a notebook, text in a terminal.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..errors import UsageError
from .scoring import Normaliser, evaluation_libraries

__all__ = ["Alignment", "ErrorReport", "Op", "alignment", "show_errors"]

_MARKS = {"hit": "", "substitute": "S", "delete": "D", "insert": "I"}
_COLOURS = {"substitute": "#fde2b8", "delete": "#f8c4c4", "insert": "#c9ecc9"}  # orange, red, green
_TITLES = {"substitute": "substitution", "delete": "deletion", "insert": "insertion"}


class Op(NamedTuple):
    """One aligned position: ``kind`` is ``"hit"``, ``"substitute"``, ``"delete"`` or ``"insert"``.

    ``reference`` is ``""`` for an insertion and ``hypothesis`` is ``""`` for a deletion, so an op
    compares equal to :func:`~bk_notebook.evaluate`'s ``edits`` tuples.
    """

    kind: str
    reference: str
    hypothesis: str


@dataclass(frozen=True)
class Alignment:
    """A reference and a hypothesis (both normalised) aligned word by word.

    Attributes
    ----------
    reference, hypothesis : str
        The texts after normalisation.
    ops : list of Op
        One per aligned position, in order: hits and the three kinds of error, each with both words.
    """

    reference: str
    hypothesis: str
    ops: list[Op]

    def count(self, kind: str) -> int:
        """How many ops are of ``kind``."""
        return sum(op.kind == kind for op in self.ops)

    @property
    def errors(self) -> int:
        """Substitutions, deletions and insertions together."""
        return sum(op.kind != "hit" for op in self.ops)

    @property
    def wer(self) -> float:
        """Errors over reference words; for an empty reference, the count of insertions (jiwer's convention)."""
        words = len(self.reference.split())
        return self.errors / words if words else float(self.errors)

    def _summary(self) -> str:
        return (f"WER {self.wer:.2f}: {self.count('substitute')} substituted, {self.count('delete')} deleted, "
                f"{self.count('insert')} inserted of {len(self.reference.split())} words")

    def __str__(self) -> str:
        rows = [("REF:", "HYP:", "")] + [(op.reference or "*" * len(op.hypothesis),
                                          op.hypothesis or "*" * len(op.reference), _MARKS[op.kind])
                                         for op in self.ops]
        widths = [max(len(ref), len(hyp), len(mark)) for ref, hyp, mark in rows]
        lines = [" ".join(row[i].ljust(w) for row, w in zip(rows, widths, strict=True)).rstrip() for i in range(3)]
        return "\n".join([self._summary(), *lines])

    def __repr__(self) -> str:
        return f"Alignment({self._summary()})\n" + "\n".join(str(self).splitlines()[1:])

    def _repr_html_(self) -> str:
        summary = f"<div style='font-size:smaller'>{html.escape(self._summary())}</div>"
        return f"<div class='bk-alignment'>{self._table_html()}{summary}</div>"

    def _table_html(self) -> str:
        ref_cells, hyp_cells = ["<th style='text-align:right'>REF</th>"], ["<th style='text-align:right'>HYP</th>"]
        for op in self.ops:
            style, title = "", ""
            if op.kind != "hit":
                style = f" style='background:{_COLOURS[op.kind]}'"
                title = f" title='{_TITLES[op.kind]}'"
            ref = html.escape(op.reference) if op.reference else "&mdash;"
            hyp = html.escape(op.hypothesis) if op.hypothesis else "&mdash;"
            if op.kind == "delete":
                ref = f"<s>{ref}</s>"
            ref_cells.append(f"<td class='bk-{op.kind}'{style}{title}>{ref}</td>")
            hyp_cells.append(f"<td class='bk-{op.kind}'{style}{title}>{hyp}</td>")
        return (f"<table class='bk-alignment'><tr>{''.join(ref_cells)}</tr>"
                f"<tr>{''.join(hyp_cells)}</tr></table>")


def alignment(
    reference: str,
    hypothesis: Any,
    *,
    lowercase: bool = True,
    punctuation: bool = True,
    numbers: str = "keep",
    normalise: Callable[[str], str] | None = None,
) -> Alignment:
    """Align ``hypothesis`` to ``reference`` word by word, after :func:`~bk_notebook.evaluate`'s normalisation.

    Parameters
    ----------
    reference : str
        What was said.
    hypothesis : str or Transcript
        What was recognised (a :class:`~bk_notebook.Transcript` gives its text).
    lowercase, punctuation, numbers, normalise
        The normalisation, as for :func:`~bk_notebook.evaluate` (the same defaults).

    Returns
    -------
    Alignment
        ``.ops`` (hits, substitutions, deletions, insertions with both words), ``.wer``; in a
        notebook it shows the reference above the hypothesis with each error coloured.
    """
    if not isinstance(reference, str):
        raise UsageError(f"reference must be a str, got {type(reference).__name__}")
    if hasattr(hypothesis, "finals") and hasattr(hypothesis, "text"):
        hypothesis = hypothesis.text
    if not isinstance(hypothesis, str):
        raise UsageError(f"hypothesis must be a str or a Transcript, got {type(hypothesis).__name__}")
    normaliser = normalise or Normaliser(lowercase, punctuation, numbers)
    return _aligned(normaliser(reference), normaliser(hypothesis))


def _aligned(reference: str, hypothesis: str) -> Alignment:
    """The alignment of two already normalised texts."""
    jiwer, _ = evaluation_libraries()
    ref, hyp = reference.split(), hypothesis.split()
    if not ref and not hyp:
        return Alignment(reference, hypothesis, [])
    ops: list[Op] = []
    for chunk in jiwer.process_words(reference, hypothesis).alignments[0]:
        r, h = ref[chunk.ref_start_idx:chunk.ref_end_idx], hyp[chunk.hyp_start_idx:chunk.hyp_end_idx]
        if chunk.type in ("equal", "substitute"):  # both pair words one to one
            kind = "hit" if chunk.type == "equal" else "substitute"
            ops.extend(Op(kind, a, b) for a, b in zip(r, h, strict=True))
        elif chunk.type == "delete":
            ops.extend(Op("delete", a, "") for a in r)
        else:
            ops.extend(Op("insert", "", b) for b in h)
    return Alignment(reference, hypothesis, ops)


@dataclass(frozen=True)
class ErrorReport:
    """The worst items of an :func:`~bk_notebook.evaluate` frame, each with its alignment.

    Attributes
    ----------
    items : list of tuple
        ``(id, Alignment)`` pairs, worst first (highest WER, then most errors); ``id`` is the
        frame's ``id`` column or its index.
    """

    items: list[tuple[Any, Alignment]]

    def __len__(self) -> int:
        return len(self.items)

    def __str__(self) -> str:
        return "\n\n".join(f"[{key}] {text}" for key, text in ((k, str(a)) for k, a in self.items))

    def __repr__(self) -> str:
        return f"ErrorReport({len(self.items)} items)\n{self}"

    def _repr_html_(self) -> str:
        blocks = "".join(f"<div style='margin:0.5em 0'><b>{html.escape(str(key))}</b>{a._repr_html_()}</div>"
                         for key, a in self.items)
        legend = "".join(f"<span style='background:{_COLOURS[k]};padding:0 0.4em;margin-right:0.5em'>"
                         f"{_TITLES[k]}</span>" for k in _COLOURS)
        return f"<div class='bk-errors'><div>{legend}</div>{blocks}</div>"


def show_errors(scores: Any, top: int = 5) -> ErrorReport:
    """The ``top`` worst items of :func:`~bk_notebook.evaluate`'s frame, each aligned and its errors marked.

    Parameters
    ----------
    scores : pandas.DataFrame
        What :func:`~bk_notebook.evaluate` returned (its normalised ``reference`` and ``hypothesis``
        columns are aligned again, without normalising twice).
    top : int
        How many items to show; items without errors are never shown.

    Returns
    -------
    ErrorReport
        Displays in a notebook as the items' alignments, worst first.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise UsageError(f"top must be a whole number >= 1, got {top!r}")
    needed = {"reference", "hypothesis", "wer", "substitutions", "deletions", "insertions"}
    if not hasattr(scores, "columns") or not needed <= set(scores.columns):
        raise UsageError("show_errors takes the DataFrame that bk.evaluate returned")
    errors = scores["substitutions"] + scores["deletions"] + scores["insertions"]
    keys = list(scores["id"]) if "id" in scores.columns else list(scores.index)
    order = sorted((i for i in range(len(scores)) if errors.iloc[i] > 0),
                   key=lambda i: (-scores["wer"].iloc[i], -errors.iloc[i], i))
    return ErrorReport([(keys[i], _aligned(str(scores["reference"].iloc[i]), str(scores["hypothesis"].iloc[i])))
                        for i in order[:top]])
