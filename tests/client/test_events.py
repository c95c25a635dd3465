"""The unread-event backlog of ``Stream.events()``: bounded, partials dropped before any final."""

from __future__ import annotations

import asyncio

import pytest

from bk_notebook.client.events import EventBacklog
from bk_notebook.protocol import Final, Partial

pytestmark = pytest.mark.pure  # the tests mutation testing runs (TESTING.md)


async def read_all(backlog: EventBacklog) -> list[Partial | Final]:
    backlog.end()

    async def drain() -> list[Partial | Final]:
        return [event async for event in backlog.read()]

    return await asyncio.wait_for(drain(), 5)  # a bound: a reader that never stops fails, not hangs


async def test_over_the_limit_the_oldest_partial_goes_and_every_final_stays() -> None:
    backlog = EventBacklog(limit=4)
    for event in (Final("f1"), Partial("p1"), Final("f2"), Partial("p2")):
        backlog.publish(event)
    backlog.publish(Final("f3"))  # over the limit: p1, the oldest partial, makes room (not f1)
    assert len(backlog) == 4 and backlog.dropped == 1
    backlog.publish(Partial("p3"))  # p2 goes next
    assert await read_all(backlog) == [Final("f1"), Final("f2"), Final("f3"), Partial("p3")]
    assert backlog.dropped == 2


async def test_a_backlog_of_finals_only_drops_the_oldest() -> None:
    backlog = EventBacklog(limit=2)
    for text in ("f1", "f2", "f3"):
        backlog.publish(Final(text))
    assert await read_all(backlog) == [Final("f2"), Final("f3")] and backlog.dropped == 1


async def test_readers_get_events_in_order_then_stop_at_the_end() -> None:
    backlog = EventBacklog()
    backlog.publish(Partial("p"))
    backlog.publish(Final("f"))
    reader = backlog.read()
    assert await anext(reader) == Partial("p")
    assert len(backlog) == 1
    backlog.end()

    async def rest() -> list[Partial | Final]:
        return [event async for event in reader]

    assert await asyncio.wait_for(rest(), 5) == [Final("f")]  # a bound for a hang


async def test_a_reader_of_an_empty_backlog_waits_for_the_next_event() -> None:
    backlog = EventBacklog()
    reader = asyncio.ensure_future(anext(backlog.read()))
    await asyncio.sleep(0)  # the reader is now waiting: nothing has been published
    assert not reader.done()
    backlog.publish(Final("late"))
    assert await asyncio.wait_for(reader, 5) == Final("late")  # a bound for a hang


async def test_the_unread_text_is_counted_and_bounded_to_the_byte() -> None:
    size = 10 + 100  # ten characters and what an event costs beyond its text
    backlog = EventBacklog(limit=100, byte_limit=3 * size)
    for text in ("p" * 10, "q" * 10, "r" * 10):
        backlog.publish(Partial(text))
    assert (backlog.bytes, backlog.dropped) == (3 * size, 0)  # exactly at the bound: all kept
    backlog.publish(Final("f" * 10))  # one more: the oldest partial goes
    assert (backlog.bytes, backlog.dropped, len(backlog)) == (3 * size, 1, 3)
    backlog.publish(Final("g" * 110))  # twice the size: two more partials go
    assert (backlog.bytes, backlog.dropped, len(backlog)) == (size + 210, 3, 2)
    reader = backlog.read()
    assert await reader.__anext__() == Final("f" * 10)
    assert backlog.bytes == 210  # what is read no longer counts
    backlog.end()
    assert [event async for event in reader] == [Final("g" * 110)] and backlog.bytes == 0
