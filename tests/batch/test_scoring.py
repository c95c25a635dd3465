"""bk.evaluate against error rates computed by hand."""

from __future__ import annotations

import functools
import math
import sys

import pytest

import bk_notebook as bk
from bk_notebook.batch.scoring import Normaliser, number_to_words

from helpers import require

pytestmark = pytest.mark.pure  # the tests mutation testing runs (TESTING.md)

pd = require("pandas", "evaluate returns a DataFrame")
jiwer = require("jiwer", "evaluate aligns with jiwer")

# (reference, hypothesis, S, D, I, wer, cer) worked out by hand
CASES = [
    ("the cat sat on the mat", "the cat sit on mat", 1, 1, 0, 2 / 6, None),
    ("a b c", "a x c d", 1, 0, 1, 2 / 3, 3 / 5),     # chars "a b c" vs "a x c d": 1 sub, 2 ins over 5
    ("hello world", "", 0, 2, 0, 1.0, 1.0),           # empty hypothesis: every word deleted
    ("", "", 0, 0, 0, 0.0, 0.0),                      # nothing to say, nothing said
    ("", "uh oh", 0, 0, 2, 2.0, 5.0),                 # empty reference: jiwer counts the insertions
    ("abc", "abd", 1, 0, 0, 1.0, 1 / 3),
]


def test_hand_computed_cases() -> None:
    refs = [c[0] for c in CASES]
    hyps = [c[1] for c in CASES]
    scores = bk.evaluate(hyps, refs)
    assert list(scores.index) == list(range(len(CASES)))  # input order
    for (ref, hyp, s, d, i, wer, cer), (_, row) in zip(CASES, scores.iterrows(), strict=True):
        assert (row.substitutions, row.deletions, row.insertions) == (s, d, i), (ref, hyp)
        assert math.isclose(row.wer, wer), (ref, hyp, row.wer)
        if cer is not None:
            assert math.isclose(row.cer, cer), (ref, hyp, row.cer)
    corpus = scores.attrs["corpus"]
    # all errors over all reference words: (2 + 2 + 2 + 0 + 2 + 1) / (6 + 3 + 2 + 0 + 0 + 1)
    assert math.isclose(corpus["wer"], 9 / 12)
    assert corpus["items"] == 6 and corpus["ref_words"] == 12
    nonempty = [k for k, r in enumerate(refs) if r]
    rest = jiwer.wer([refs[k] for k in nonempty], [hyps[k] for k in nonempty])  # its corpus WER: 7 / 12
    assert math.isclose(corpus["wer"], rest + 2 / 12)  # plus the 2 insertions against the empty reference


def test_edits_for_error_analysis() -> None:
    scores = bk.evaluate(["the cat sit on mat"], ["the cat sat on the mat"])
    assert scores.loc[0, "edits"] == [("substitute", "sat", "sit"), ("delete", "the", "")]
    many = bk.evaluate(["x y c d e f"], ["a b c"])
    assert many.loc[0, "edits"] == [("substitute", "a", "x"), ("substitute", "b", "y"),
                                     ("insert", "", "d"), ("insert", "", "e"), ("insert", "", "f")]
    for _, row in bk.evaluate(["uh the cat", "", "a b"], ["the cat sat", "one two", "b"]).iterrows():
        kinds = [kind for kind, _, _ in row.edits]
        assert (kinds.count("substitute"), kinds.count("delete"), kinds.count("insert")) == \
            (row.substitutions, row.deletions, row.insertions)


def test_normalisation_is_stated_and_configurable() -> None:
    default = bk.evaluate(["hello world"], ["Hello, World!"])
    assert default.loc[0, "wer"] == 0.0
    assert "lowercase=True" in default.attrs["normalisation"]
    strict = bk.evaluate(["hello world"], ["Hello, World!"], lowercase=False, punctuation=False)
    assert strict.loc[0, "wer"] == 1.0 and strict.loc[0, "substitutions"] == 2
    assert bk.evaluate(["i have seven cats"], ["I have 7 cats"]).loc[0, "wer"] == 0.25
    assert bk.evaluate(["i have seven cats"], ["I have 7 cats"], numbers="words").loc[0, "wer"] == 0.0
    custom = bk.evaluate(["HELLO"], ["hello"], normalise=str.upper)
    assert custom.loc[0, "wer"] == 0.0 and custom.attrs["normalisation"] == "custom: upper"
    assert Normaliser()("Don't stop -- it's \"fine\"; well-known.") == "don't stop it's fine well known"


def test_compatibility_forms_score_as_the_plain_text() -> None:
    # NFKC: a ligature, full-width letters and digits, a decomposed accent are the words a reader sees.
    decomposed = "cafe\u0301"  # e + combining acute accent
    assert decomposed != "caf\u00e9" and Normaliser()(decomposed) == "caf\u00e9"
    hyps = ["\ufb01ne caf\u00e9", "\uff28\uff45\uff4c\uff4c\uff4f \uff17", f"fine {decomposed}"]
    refs = ["fine caf\u00e9", "hello 7", "fine caf\u00e9"]
    scores = bk.evaluate(hyps, refs, numbers="words")
    assert list(scores["wer"]) == [0.0, 0.0, 0.0] and list(scores["cer"]) == [0.0, 0.0, 0.0]
    assert list(scores["hypothesis"]) == ["fine caf\u00e9", "hello seven", "fine caf\u00e9"]


def test_number_to_words() -> None:
    assert number_to_words(0) == "zero"
    assert number_to_words(40) == "forty"
    assert number_to_words(115) == "one hundred fifteen"
    assert number_to_words(1_234_567) == "one million two hundred thirty four thousand five hundred sixty seven"


def test_on_a_batch_result_dataframe_with_failures_and_transcripts() -> None:
    df = pd.DataFrame({"text": ["hello world", None], "reference": ["hello there world", "good morning"],
                       "error": [None, "ConnectError: gone"]}, index=["a.wav", "b.wav"])
    scores = bk.evaluate(df, "reference")
    assert list(scores.index) == ["a.wav", "b.wav"]
    assert scores.loc["a.wav", "deletions"] == 1 and math.isclose(scores.loc["a.wav", "wer"], 1 / 3)
    assert bool(scores.loc["b.wav", "missing"]) and scores.loc["b.wav", "wer"] == 1.0  # a failure costs its words
    t = bk.Transcript()
    t.add_final("good morning", 0.0, 1.0, sent=1.0)
    lost = bk.ConnectionLost("dropped", transcript=t)
    mixed = bk.evaluate([t, lost, None], ["good morning", "good morning everyone", "x"], ids=["p", "q", "r"])
    assert list(mixed["id"]) == ["p", "q", "r"]
    assert list(mixed["wer"]) == [0.0, 1 / 3, 1.0]
    assert list(mixed["missing"]) == [False, False, True]


def test_bad_arguments() -> None:
    with pytest.raises(bk.UsageError, match="2 hypotheses but 1 references"):
        bk.evaluate(["a", "b"], ["a"])
    with pytest.raises(bk.UsageError, match="one string"):
        bk.evaluate("a b", ["a b"])
    with pytest.raises(bk.UsageError, match="no such column"):
        bk.evaluate(["a"], "reference")
    with pytest.raises(bk.UsageError, match="numbers"):
        bk.evaluate(["a"], ["a"], numbers="roman")
    with pytest.raises(bk.UsageError, match="str or a Transcript"):
        bk.evaluate([3], ["a"])


@pytest.mark.parametrize("n, words", [
    (-5, "minus five"), (19, "nineteen"), (20, "twenty"), (21, "twenty one"), (99, "ninety nine"),
    (100, "one hundred"), (101, "one hundred one"), (1000, "one thousand"), (1_000_000, "one million"),
    (2_000_000_005, "two billion five"),
])
def test_number_to_words_at_each_boundary(n: int, words: str) -> None:
    assert number_to_words(n) == words


def test_quotes_go_and_apostrophes_inside_words_stay() -> None:
    assert Normaliser()("'Quoted' rock 'n' roll, o'clock") == "quoted rock n roll o'clock"


def test_the_result_columns_rows_and_corpus_totals() -> None:
    scores = bk.evaluate(["a x c d", None], ["a b c", "hello world"])
    assert list(scores.columns) == ["reference", "hypothesis", "wer", "cer", "substitutions", "deletions",
                                    "insertions", "hits", "ref_words", "char_errors", "ref_chars", "missing", "edits"]
    first = scores.iloc[0].to_dict()
    assert first == {"reference": "a b c", "hypothesis": "a x c d", "wer": 2 / 3, "cer": 3 / 5, "substitutions": 1,
                     "deletions": 0, "insertions": 1, "hits": 2, "ref_words": 3, "char_errors": 3, "ref_chars": 5,
                     "missing": False, "edits": [("substitute", "b", "x"), ("insert", "", "d")]}
    assert (scores.loc[1, "deletions"], scores.loc[1, "char_errors"], scores.loc[1, "ref_chars"]) == (2, 11, 11)
    assert scores.attrs["corpus"] == {"wer": 4 / 5, "cer": 14 / 16, "substitutions": 1, "deletions": 2,
                                      "insertions": 1, "ref_words": 5, "ref_chars": 16, "items": 2, "missing": 1}
    nothing_to_say = bk.evaluate(["uh"], [""]).attrs["corpus"]
    assert (nothing_to_say["wer"], nothing_to_say["cer"]) == (1.0, 2.0)  # no reference words: the error count
    with_ids = bk.evaluate(["a"], ["a"], ids=["clip-1"])
    assert list(with_ids.columns[:2]) == ["id", "reference"] and with_ids.loc[0, "id"] == "clip-1"


def test_every_refusal_says_what_was_wrong(monkeypatch) -> None:
    class OnlyText:
        text = "has text, no finals"

    cases = [
        (lambda: bk.evaluate("a b", ["a b"]), "hypotheses must be a sequence of texts, got one string"),
        (lambda: bk.evaluate(["a b"], "a b"), "references='a b' names a column, but hypotheses has no such column"),
        (lambda: bk.evaluate(pd.DataFrame({"t": ["a"]}), ["a"]), "hypotheses is a DataFrame without a 'text' column"),
        (lambda: bk.evaluate(["a"], [1]), "every reference must be a str"),
        (lambda: bk.evaluate([1.5], ["a"]), "a hypothesis must be a str or a Transcript, got float"),
        (lambda: bk.evaluate([OnlyText()], ["a"]), "a hypothesis must be a str or a Transcript, got OnlyText"),
        (lambda: bk.evaluate(["a"], ["a"], numbers="roman"), "numbers must be 'keep' or 'words', got 'roman'"),
    ]
    for call, message in cases:
        with pytest.raises(bk.UsageError) as info:
            call()
        assert str(info.value) == message
    assert bk.evaluate(["a"], ("a",)).loc[0, "wer"] == 0.0 and bk.evaluate(["a"], ("b",)).loc[0, "wer"] == 1.0
    monkeypatch.setitem(sys.modules, "jiwer", None)
    with pytest.raises(bk.MissingDependency) as missing:
        bk.evaluate(["a"], ["a"])
    assert str(missing.value) == "evaluate needs jiwer and pandas: pip install 'bk-notebook[eval]'"


def test_a_custom_normaliser_without_a_name_is_described_by_its_repr() -> None:
    shout = functools.partial(str.upper)
    assert bk.evaluate(["a"], ["A"], normalise=shout).attrs["normalisation"] == f"custom: {shout!r}"


def test_nothing_to_score_gives_the_columns_and_zero_totals() -> None:
    scores = bk.evaluate([], [])
    assert len(scores) == 0 and list(scores.columns)[:3] == ["reference", "hypothesis", "wer"]
    assert scores.attrs["corpus"]["wer"] == 0.0 and scores.attrs["corpus"]["items"] == 0
    with pytest.raises(bk.UsageError) as info:
        bk.evaluate(["a"], pd.DataFrame({"transcript": ["a"]}))
    assert str(info.value) == "references is a DataFrame without a 'text' column"


def test_a_missing_dependency_of_jiwer_is_named(monkeypatch) -> None:
    from bk_notebook.batch.scoring import evaluate

    from helpers import refuse_import

    refuse_import(monkeypatch, "jiwer", missing="rapidfuzz")
    with pytest.raises(ImportError, match=r"^evaluate needs jiwer and pandas \(rapidfuzz is missing\): pip install"):
        evaluate(["a"], ["a"])
