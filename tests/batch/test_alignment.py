"""The error view: ``bk.alignment`` on crafted pairs, its two reprs, and ``bk.show_errors`` on evaluate's frame."""

from __future__ import annotations

from typing import Any

import pytest

import bk_notebook as bk
from bk_notebook.batch.alignment import Op

from helpers import require


@pytest.fixture(autouse=True)
def _libraries() -> None:
    require("jiwer", "alignments")
    require("pandas", "evaluate's frame")


def kinds(a: Any) -> list[str]:
    return [op.kind for op in a.ops]


def test_each_kind_of_error_is_aligned_with_both_words() -> None:
    a = bk.alignment("the quick brown fox jumps high", "the quack brown jumps high over")
    assert a.ops == [Op("hit", "the", "the"), Op("substitute", "quick", "quack"), Op("hit", "brown", "brown"),
                     Op("delete", "fox", ""), Op("hit", "jumps", "jumps"), Op("hit", "high", "high"),
                     Op("insert", "", "over")]
    assert (a.count("hit"), a.count("substitute"), a.count("delete"), a.count("insert")) == (4, 1, 1, 1)
    assert a.errors == 3 and a.wer == pytest.approx(3 / 6)


@pytest.mark.parametrize("reference, hypothesis, expected", [
    ("a b c", "a b c", ["hit", "hit", "hit"]),
    ("a b c", "", ["delete", "delete", "delete"]),
    ("", "x y", ["insert", "insert"]),
    ("", "", []),
    ("a b", "x y", ["substitute", "substitute"]),
    ("a b c d", "a d", ["hit", "delete", "delete", "hit"]),
])
def test_crafted_pairs(reference: str, hypothesis: str, expected: list[str]) -> None:
    assert kinds(bk.alignment(reference, hypothesis)) == expected


def test_the_normalisation_is_evaluates() -> None:
    a = bk.alignment("Hello, World! It's 7.", "hello world it's seven", numbers="words")
    assert kinds(a) == ["hit"] * 4 and a.reference == "hello world it's seven"
    assert kinds(bk.alignment("Hello", "hello", lowercase=False)) == ["substitute"]
    assert kinds(bk.alignment("A B", "a b", normalise=str.lower)) == ["hit", "hit"]
    scores = bk.evaluate(["Hello wurld, friend"], ["hello world friends"])
    assert [tuple(op) for op in bk.alignment("hello world friends", "Hello wurld, friend").ops
            if op.kind != "hit"] == scores["edits"][0]


def test_a_transcript_is_a_hypothesis_and_bad_input_is_a_usage_error() -> None:
    t = bk.Transcript()
    t.add_final("good morning", 0.0, 1.0, sent=1.0)
    assert kinds(bk.alignment("good morning", t)) == ["hit", "hit"]
    with pytest.raises(bk.UsageError, match="reference"):
        bk.alignment(None, "x")  # type: ignore[arg-type]
    with pytest.raises(bk.UsageError, match="hypothesis"):
        bk.alignment("x", 3)


def test_the_text_repr_lines_the_words_up_and_marks_each_error() -> None:
    text = str(bk.alignment("the quick brown fox", "the quack brown fox over"))
    summary, ref, hyp, marks = text.splitlines()
    assert summary == "WER 0.50: 1 substituted, 0 deleted, 1 inserted of 4 words"
    assert ref == "REF: the quick brown fox ****"
    assert hyp == "HYP: the quack brown fox over"
    assert marks.index("S") == ref.index("quick") and marks.index("I") == ref.index("****")
    assert "Alignment(WER 0.50" in repr(bk.alignment("the quick brown fox", "the quack brown fox over"))


def test_the_html_repr_puts_the_reference_above_and_colours_errors() -> None:
    page = bk.alignment("a <b> c", "a x", punctuation=False)._repr_html_()
    ref_row, hyp_row = page.split("</tr><tr>")
    assert "REF" in ref_row and "HYP" in hyp_row
    assert "<td class='bk-substitute' style='background:#fde2b8' title='substitution'>&lt;b&gt;</td>" in ref_row
    assert "<td class='bk-delete' style='background:#f8c4c4' title='deletion'><s>c</s></td>" in ref_row
    assert "<td class='bk-delete' style='background:#f8c4c4' title='deletion'>&mdash;</td>" in hyp_row
    assert "<td class='bk-hit'>a</td>" in hyp_row


def test_show_errors_gives_the_worst_items_worst_first() -> None:
    refs = ["hello world", "a b c d", "good morning", "one two three four"]
    hyps = ["hello world", "a x c", "bad morning all", "one two three for"]
    scores = bk.evaluate(hyps, refs, ids=["p", "q", "r", "s"])
    report = bk.show_errors(scores, top=2)
    assert [key for key, _ in report.items] == ["r", "q"]  # WER 1.0, then 0.5; the perfect item never shows
    assert kinds(report.items[0][1]) == ["substitute", "hit", "insert"]
    assert len(bk.show_errors(scores, top=10)) == 3
    assert "[r] WER 1.00" in str(report) and "<b>r</b>" in report._repr_html_()
    assert "substitution" in report._repr_html_()
    by_index = bk.show_errors(bk.evaluate(hyps, refs), top=1)
    assert by_index.items[0][0] == 2


@pytest.mark.parametrize("top", [0, -1, 1.5, True])
def test_show_errors_refuses_a_bad_top_and_a_frame_that_is_not_evaluates(top: Any) -> None:
    scores = bk.evaluate(["a"], ["b"])
    with pytest.raises(bk.UsageError, match="top"):
        bk.show_errors(scores, top=top)
    with pytest.raises(bk.UsageError, match="evaluate"):
        bk.show_errors(scores[["wer"]])
