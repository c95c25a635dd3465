"""The ``speed`` setting, read the same way by the CLI (``--speed``) and the API (``speed=``)."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..errors import UsageError

__all__ = ["parse_speed"]

_UNPACED = ("max", "none")
_HINT = "a positive multiple of real time (1 = real time, 10 = ten times faster), or 'max' / None for no pacing"


def parse_speed(value: Any) -> float | None:
    """Return ``value`` as a pacing factor: a positive float, or None for no pacing.

    Accepted: a positive finite number (``10``, ``0.5``, ``"2"``), ``None``,
    ``"max"`` or ``"none"`` (any case) for "as fast as the server reads".

    Raises
    ------
    UsageError
        Anything else (zero, negative, NaN, infinity, a boolean, another word);
        the message says that speed is a multiple of real time.

    Examples
    --------
    >>> parse_speed("max") is None
    True
    >>> parse_speed("2.5")
    2.5
    """
    if value is None:
        return None
    number: Any = value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _UNPACED:
            return None
        try:
            number = float(text)
        except ValueError:
            raise UsageError(f"speed must be {_HINT}; got {value[:40]!r}") from None
    if isinstance(number, bool) or not isinstance(number, numbers.Real):
        raise UsageError(f"speed must be {_HINT}; got {type(value).__name__}")
    factor = float(number)
    if not (math.isfinite(factor) and factor > 0):
        raise UsageError(f"speed must be {_HINT}; got {value!r}")
    return factor
