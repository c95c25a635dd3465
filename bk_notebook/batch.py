"""Many recordings at once: bounded concurrency, a progress bar, no lost results."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from .client import Client
from .errors import BatchError, UsageError
from .transcript import Transcript

__all__ = ["transcribe_many"]


def _split_item(item: Any) -> tuple[Any, float | None]:
    """An item is a path, encoded bytes, an ``(array, sr)`` pair or ``{"audio": ..., "sr": ...}``."""
    if isinstance(item, dict):
        if "audio" not in item:
            raise UsageError("a dict item needs an 'audio' key (and 'sr' for arrays)")
        return item["audio"], item.get("sr")
    if isinstance(item, tuple):
        if len(item) != 2:
            raise UsageError(f"a tuple item must be (array, sr), got {len(item)} elements")
        return item[0], item[1]
    return item, None


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm  # a widget bar in notebooks, text in terminals

    return tqdm(total=total, desc="transcribing", unit="item")


async def transcribe_many(
    items: Iterable[Any],
    concurrency: int = 4,
    progress: bool = True,
    return_exceptions: bool = False,
    *,
    client: Client | None = None,
    **kwargs: Any,
) -> list[Any]:
    """Transcribe many recordings with at most ``concurrency`` sessions at once.

    Parameters
    ----------
    items : iterable
        Paths, encoded bytes, ``(array, sr)`` pairs or ``{"audio": ..., "sr": ...}`` dicts.
    concurrency : int
        Sessions open at the same time.
    progress : bool
        Show a tqdm progress bar of finished items.
    return_exceptions : bool
        If true, a failed item's exception takes its place in the returned list.
        If false, every item still runs to the end, then a :class:`BatchError`
        is raised whose ``.results`` hold every transcript and error in order.
    client : Client, optional
        Defaults to ``Client()`` (``$BK_STT_URL``, ``$BK_TOKEN``).
    **kwargs
        Passed to :meth:`Client.transcribe` (``speed``, ``on_final``, ...).

    Returns
    -------
    list
        One :class:`Transcript` per item, in the order given.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise UsageError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
    pending = [_split_item(item) for item in items]  # malformed items fail before any traffic
    client = client or Client()
    gate = asyncio.Semaphore(concurrency)
    bar = _progress_bar(len(pending), progress)

    async def one(audio: Any, sr: float | None) -> Transcript:
        try:
            async with gate:
                return await client.transcribe(audio, sr, **kwargs)
        finally:
            if bar is not None:
                bar.update(1)

    try:
        results = await asyncio.gather(*(one(audio, sr) for audio, sr in pending), return_exceptions=True)
    finally:
        if bar is not None:
            bar.close()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # cancellation and interrupts are not per-item failures
    failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
    if failed and not return_exceptions:
        first = results[failed[0]]
        raise BatchError(
            f"{len(failed)} of {len(results)} items failed (first: item {failed[0]}: {first}); "
            "the others' transcripts are in .results",
            results=list(results),
        )
    return list(results)
