"""The ``speed`` setting, one reading for the CLI's ``--speed`` and the API's ``speed=``."""

from __future__ import annotations

import numpy as np
import pytest

import bk_notebook as bk
from bk_notebook.client.speed import parse_speed

pytestmark = pytest.mark.pure  # the tests mutation testing runs (TESTING.md)

HINT = "a positive multiple of real time (1 = real time, 10 = ten times faster), or 'max' / None for no pacing"


def test_numbers_words_and_none() -> None:
    assert [parse_speed(v) for v in (None, "max", "MAX", " None ", 2, 0.5, "10", " 2.5 ", np.float32(3))] == [
        None, None, None, None, 2.0, 0.5, 10.0, 2.5, 3.0]
    assert isinstance(parse_speed(2), float) and isinstance(parse_speed(np.float32(3)), float)


@pytest.mark.parametrize("bad, shown", [
    (0, "0"), (-1, "-1"), ("0", "'0'"), (float("nan"), "nan"), (float("inf"), "inf"), ("-inf", "'-inf'"),
    ("fast", "'fast'"), ("x" * 50, repr("x" * 40)), (True, "bool"), ([1], "list"), (b"2", "bytes"),
])
def test_anything_else_is_refused_with_the_same_hint(bad: object, shown: str) -> None:
    with pytest.raises(bk.UsageError) as info:
        parse_speed(bad)
    assert str(info.value) == f"speed must be {HINT}; got {shown}"
