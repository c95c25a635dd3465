"""The pieces every live source shares: CaptureCallbacks and the drop-oldest backlog."""

from __future__ import annotations

import threading

import pytest

from bk_notebook.audio.capture import AsyncDropOldest, CaptureCallbacks, ThreadDropOldest


class Source(CaptureCallbacks):
    def __init__(self) -> None:
        self._init_callbacks()


def test_a_source_fires_each_kind_to_its_callbacks_and_a_consumer_can_leave() -> None:
    source, seen = Source(), []
    chunk, stopped, failed = (lambda c: seen.append(("chunk", c))), (lambda: seen.append("stop")), seen.append
    source.on_chunk(chunk)
    source.on_stop(stopped)
    source.on_error(failed)
    source._fire_chunk(b"ab")
    source._fire_error("gone")
    source._fire_stop()
    assert seen == [("chunk", b"ab"), "gone", "stop"]
    for fn in (chunk, stopped, failed, print):  # a callback never registered is no error
        source.remove_callback(fn)
    source._fire_chunk(b"cd")
    source._fire_stop()
    assert seen == [("chunk", b"ab"), "gone", "stop"]


def test_a_callback_may_unsubscribe_itself_while_being_fired() -> None:
    source, seen = Source(), []

    def once(chunk: bytes) -> None:
        seen.append(chunk)
        source.remove_callback(once)

    source.on_chunk(once)
    source.on_chunk(seen.append)
    source._fire_chunk(b"1")
    source._fire_chunk(b"2")
    assert seen == [b"1", b"1", b"2"]


def test_the_thread_backlog_keeps_the_newest_counts_the_dropped_and_never_drops_the_end() -> None:
    dropped: list[int] = []
    backlog = ThreadDropOldest(3, dropped.append)
    for i in range(10):
        backlog.push(i)
    backlog.put_nowait(None)  # the end marker goes in beyond the limit
    out = []
    reader = threading.Thread(target=lambda: out.extend(iter(backlog.get, None)))
    reader.start()
    reader.join(5)
    assert out == [7, 8, 9] and dropped == [0, 1, 2, 3, 4, 5, 6]


async def test_the_async_backlog_keeps_the_newest_and_counts_the_dropped() -> None:
    dropped: list[bytes] = []
    backlog = AsyncDropOldest(2, dropped.append)
    for chunk in (b"a", b"b", b"c"):
        backlog.push(chunk)
    backlog.put_nowait(None)
    assert [await backlog.get() for _ in range(3)] == [b"b", b"c", None] and dropped == [b"a"]


@pytest.mark.parametrize("limit", [0, -5])
def test_a_backlog_holds_at_least_one_item(limit: int) -> None:
    backlog = AsyncDropOldest(limit)
    backlog.push(1)
    backlog.push(2)
    assert backlog.qsize() == 1 and backlog.get_nowait() == 2


def test_a_transcriber_source_of_no_known_kind_is_refused_by_the_adapter_factory() -> None:
    pytest.importorskip("ipywidgets")
    from bk_notebook.errors import BkError
    from bk_notebook.widgets.sources import adapt_source

    with pytest.raises(BkError, match="source must be None"):
        adapt_source(object())
