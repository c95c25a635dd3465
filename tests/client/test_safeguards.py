"""The client's safeguards: checked seconds, bounded waits, and callbacks that cannot end a session."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import bk_notebook as bk
from bk_notebook.client.safeguards import call_back, call_back_sync, deadline, positive_seconds

pytestmark = pytest.mark.pure  # the tests mutation testing runs (TESTING.md)


def test_positive_seconds_names_the_setting() -> None:
    assert positive_seconds("drain_timeout", 2) == 2.0 and isinstance(positive_seconds("x", 2), float)
    assert positive_seconds("x", 0.25) == 0.25
    for bad in (0, -1.0, float("nan"), True, "3", None):
        with pytest.raises(bk.UsageError, match=r"^drain_timeout must be a positive number of seconds, got "):
            positive_seconds("drain_timeout", bad)


async def test_deadline_ends_a_wait_with_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        async with deadline(0.01):
            await asyncio.Event().wait()  # never set: only the deadline ends it
    async with deadline(None):  # no deadline
        await asyncio.sleep(0)


async def test_call_back_calls_plain_functions_and_awaits_coroutines() -> None:
    seen: list[Any] = []

    async def later(arg: Any) -> None:
        await asyncio.sleep(0)
        seen.append(("async", arg))

    await call_back(None, "ignored")
    await call_back(lambda arg: seen.append(("sync", arg)), 1)
    await call_back(later, 2)
    call_back_sync(lambda arg: seen.append(("display", arg)), 3)
    assert seen == [("sync", 1), ("async", 2), ("display", 3)]


async def test_a_raising_callback_is_logged_and_the_session_goes_on(caplog) -> None:
    def broken(arg: Any) -> None:
        raise ValueError(f"bad {arg}")

    async def broken_later(arg: Any) -> None:
        raise ValueError(f"bad later {arg}")

    with caplog.at_level(logging.ERROR, "bk_notebook.client.client"):
        await call_back(broken, 1)
        await call_back(broken_later, 2)
        call_back_sync(broken, 3)
    records = [r for r in caplog.records if r.name == "bk_notebook.client.client"]
    assert [str(r.exc_info[1]) for r in records] == ["bad 1", "bad later 2", "bad 3"]
    assert [r.getMessage() for r in records] == [f"callback {f!r} raised; the session goes on"
                                                 for f in (broken, broken_later, broken)]
