"""Many recordings at once: bounded concurrency, a progress bar, a checkpoint, no lost results.

Theory of operation
-------------------
The input (a list, a DataFrame, a folder or a Hugging Face Dataset) becomes a
list of :class:`~bk_notebook.batch.inputs.BatchItem`.  With a checkpoint, each
item gets a key (its id, its path or a hash of its audio); items already in the
file are taken from it and items with the same key run once.  The rest run
locally as tasks behind a semaphore, or on a Dask cluster.  Each item's result is handled
the moment it finishes, on the caller's loop: it is written to the checkpoint
(one line, fsync'd) and counted on the progress bar.  An interrupt cancels the
running items and returns within ``CANCEL_GRACE`` seconds; what finished is in
the checkpoint.

A batch that cannot work is refused or stopped early rather than run into an
error column: with no token for the hosted service it raises before any item
starts (the CLI's own check), and when its first ``EARLY_STOP_ITEMS`` items all
fail with the same configuration error (a refused token, a refused connection,
an engine that cannot start) no further item starts (``keep_going=True`` tries
them all).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..client.client import Client
from ..client.connect import require_token
from ..errors import (
    AuthError,
    BatchError,
    CheckpointError,
    ClusterError,
    ConnectError,
    ConnectionLost,
    MissingDependency,
    UsageError,
    WorkerUnavailable,
)
from ..transcript import Transcript
from .checkpoint import Checkpoint, check_unambiguous_ids, fingerprint, item_key, record_of, transcript_of
from .inputs import BatchItem, as_items

__all__ = ["CANCEL_GRACE", "EARLY_STOP_ITEMS", "current_item", "transcribe_many"]

CANCEL_GRACE = 1.5  # seconds an interrupted batch waits for its items to close their sessions
# This many first items failing alike stop a batch: one could be a bad file, three with the same
# configuration error are the setup (and a batch of thousands would otherwise try every one).
EARLY_STOP_ITEMS = 3
logger = logging.getLogger("bk_notebook.batch.run")
_CALLBACKS = ("on_partial", "on_final", "on_progress", "display")
# Set in each item's task; the session's own tasks inherit it, so callbacks can tell items apart.
_CURRENT_ITEM: contextvars.ContextVar[int | None] = contextvars.ContextVar("bk_current_item", default=None)


def current_item() -> int | None:
    """The position in the input of the item a callback of :func:`transcribe_many` is about.

    None outside a batch.  The callbacks (``on_final``, ``on_progress``, ...) are shared by
    every item, so this is how one callback keeps items apart::

        sent = {}
        await bk.transcribe_many(files, on_progress=lambda s: sent.update({bk.batch.current_item(): s}))
    """
    return _CURRENT_ITEM.get()


def _progress_bar(total: int, done: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm  # a widget bar in notebooks, text in terminals

    return tqdm(total=total, initial=done, desc="transcribing", unit="item")


async def transcribe_many(
    items: Any,
    concurrency: int = 4,
    progress: bool = True,
    return_exceptions: bool = False,
    *,
    client: Client | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    cluster: Any = None,
    worker_server: dict[str, Any] | None = None,
    worker_timeout: float = 60.0,
    column: str | None = None,
    sr_column: str | None = "sr",
    id_column: str | None = "id",
    pattern: str = "**/*",
    keep_going: bool = False,
    **kwargs: Any,
) -> Any:
    """Transcribe many recordings with at most ``concurrency`` sessions at once.

    Parameters
    ----------
    items : iterable, DataFrame, folder or datasets.Dataset
        Paths, encoded bytes, ``(array, sr)`` pairs or ``{"audio": ..., "sr": ..., "id": ...}``
        dicts; or a ``pandas.DataFrame`` with a column of paths or arrays (and an optional
        ``sr`` and ``id`` column); or a folder (``str``/``Path`` of a directory: its audio files
        matching ``pattern``); or a Hugging Face ``datasets.Dataset`` with an ``Audio`` column.
    concurrency : int
        Sessions open at the same time (with ``cluster``: per worker thread, one).
    progress : bool
        Show a tqdm progress bar of finished items.
    return_exceptions : bool
        For list input: if true, a failed item's exception takes its place in the returned
        list; if false, every item still runs to the end, then a :class:`BatchError` is raised
        whose ``.results`` hold every transcript and error in order.  Tabular results always
        report failures in their ``error`` column.
    client : Client, optional
        Defaults to ``Client()`` (``$BK_STT_URL``, ``$BK_TOKEN``).  With ``cluster``, each
        worker connects to this client's URL with its token and settings; without one, each
        worker starts its own embedded local server.
    checkpoint : str or os.PathLike, optional
        A JSON Lines file: each finished item is appended (and fsync'd) as one line with
        ``key``, ``complete``, ``finals``, ``text``, ``duration``, ``session_id`` and ``gaps``; items
        whose key is already there are not transcribed again.  Failed items are not written,
        so a rerun retries them.
    cluster : dask.distributed.Client, optional
        Run the items on this Dask cluster's workers (see :mod:`bk_notebook.batch.cluster`).
    worker_server : dict, optional
        With ``cluster`` and no ``client``: arguments of each worker's
        :func:`~bk_notebook.local_server` (default ``{"engine": "auto"}``).
    worker_timeout : float
        With ``cluster``: seconds to wait for a first worker, and the longest the cluster may
        have none while items are left, before a :class:`ClusterError`; a lost scheduler
        raises one too.  Either way ``.results`` holds what finished (and the checkpoint).
    column, sr_column, id_column : str, optional
        For DataFrame and Dataset input: the audio column (default: the first of ``audio``,
        ``path``, ``file`` present), the sample-rate column and the key column, if present.
    pattern : str
        For a folder: the glob of files to take (default: every audio file, recursively).
    keep_going : bool
        By default, when the first ``EARLY_STOP_ITEMS`` (3) items to finish all failed with the
        same configuration error (:class:`AuthError`, a connection that could not be opened,
        :class:`WorkerUnavailable` such as an engine that cannot start, a :class:`UsageError`),
        no further item starts and a :class:`BatchError` is raised once the running ones end; its
        ``.results`` keep what finished (and so does the checkpoint).  True tries every item
        whatever fails.  Runs on a ``cluster`` submit every item at once and are not stopped.
    **kwargs
        Passed to :meth:`Client.transcribe` (``speed``, ``on_final``, ...).

    Returns
    -------
    list, DataFrame or datasets.Dataset
        For a list: one :class:`Transcript` per item, in the order given.  For a DataFrame or
        a folder: a DataFrame aligned with the input, with ``text``, ``finals``, ``complete``
        and ``error`` columns added.  For a Dataset: the Dataset with those columns added.

    Raises
    ------
    UsageError
        Before any item starts: bad arguments, or no ``client`` while neither ``$BK_TOKEN`` nor
        ``$BK_STT_URL`` is set (the hosted service needs a token; pass
        ``client=bk.Client(server.url)`` for a local server).
    BatchError
        Items failed (lists, unless ``return_exceptions``), or the batch stopped early (above).
    """
    _check_concurrency(concurrency)
    source = as_items(items, column=column, sr_column=sr_column, id_column=id_column, pattern=pattern)
    pending = [BatchItem.of(item) for item in source.items]  # malformed items fail before any traffic
    _check_cluster_arguments(cluster, client, worker_server, worker_timeout, kwargs)
    if cluster is None or client is not None:  # without a client, each Dask worker runs its own server
        client = client or Client()
        require_token(client.settings)  # the hosted service with no token: every item would fail alike
    batch = _plan(pending, checkpoint, keyed=checkpoint is not None or cluster is not None)
    batch.keep_going = keep_going or cluster is not None
    batch.bar = _progress_bar(len(pending), batch.finished_count(), progress)
    try:
        if cluster is not None:
            from .cluster import run_on_cluster

            await run_on_cluster(cluster, batch.work(pending), batch.finished, client=client,
                                 worker_server=worker_server, worker_timeout=worker_timeout, **kwargs)
        else:
            assert client is not None  # set above for local runs
            await _run_local(batch.work(pending), batch.first_positions(), batch.finished, client,
                             concurrency, kwargs, stopped=batch.stopped)
    except ClusterError as exc:
        exc.results = list(batch.results)
        raise
    except BaseException:
        batch.log_interruption()
        raise
    finally:
        batch.close()
    return batch.outcome(source.wrap, return_exceptions)


def _check_concurrency(concurrency: Any) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise UsageError(f"concurrency must be a whole number >= 1, got {concurrency!r}")


def _check_cluster_arguments(
    cluster: Any, client: Client | None, worker_server: dict[str, Any] | None, worker_timeout: Any,
    kwargs: dict[str, Any],
) -> None:
    """Arguments that need ``cluster=``, or that it cannot take, refused before any traffic."""
    if cluster is not None:
        if any(kwargs.get(name) for name in _CALLBACKS):
            raise UsageError(f"{', '.join(_CALLBACKS)} run in the caller's kernel: not available with cluster=")
        from .cluster import check_cluster

        check_cluster(cluster, client, worker_server, kwargs)
        if isinstance(worker_timeout, bool) or not isinstance(worker_timeout, (int, float)) or worker_timeout <= 0:
            raise UsageError(f"worker_timeout must be a positive number of seconds, got {worker_timeout!r}")
    elif worker_server is not None:
        raise UsageError("worker_server= applies with cluster= only (each Dask worker's embedded server)")


def _plan(pending: list[BatchItem], checkpoint: str | os.PathLike[str] | None, *, keyed: bool) -> _Batch:
    """Key every item, take what the checkpoint already holds, and list what is left to run.

    Keyed (a checkpoint or a cluster), items with the same key run once; unkeyed, each item is its own.
    """
    keys = [item_key(item) for item in pending] if keyed else [str(i) for i in range(len(pending))]
    if keyed:
        check_unambiguous_ids(pending, keys)
    prints = {} if checkpoint is None else {key: fingerprint(pending[i].audio, pending[i].sr)
                                            for i, key in enumerate(keys)}
    store = Checkpoint(checkpoint) if checkpoint is not None else None
    batch = _Batch(results=[None] * len(pending), prints=prints, store=store)
    changed: set[str] = set()
    for i, key in enumerate(keys):
        kept = store.done.get(key) if store is not None else None
        if kept is not None and kept.get("fingerprint", prints[key]) != prints[key]:
            changed.add(key)  # the same key for other audio: transcribe it again, never answer from the file
            kept = None
        if kept is not None:
            batch.results[i] = transcript_of(kept)
        else:
            batch.todo.setdefault(key, []).append(i)  # unkeyed, the key is the position
    if changed:
        logger.warning("%d item(s) changed since the checkpoint %s was written (their audio differs): transcribing "
                       "them again, e.g. %s", len(changed), store.path if store else "", sorted(changed)[:3])
    return batch


@dataclass
class _Batch:
    """One call's results as they arrive, what is left to run, and the checkpoint each result goes to."""

    results: list[Any]  # one per input position: None until it finishes (or comes from the checkpoint)
    prints: dict[str, str]  # key -> fingerprint of its audio (with a checkpoint)
    store: Checkpoint | None
    todo: dict[str, list[int]] = field(default_factory=dict)  # key -> positions (one run per key when keyed)
    bar: Any = None
    write_failure: CheckpointError | None = None  # the first one: no new item starts after it
    keep_going: bool = True  # False: watch the first items to finish (and stop on one setup error)
    leading_failures: list[Exception] = field(default_factory=list)  # in the order items finished
    early_stop: Exception | None = None  # the configuration error that stopped the batch

    def finished_count(self) -> int:
        return sum(1 for r in self.results if r is not None)

    def work(self, pending: list[BatchItem]) -> list[tuple[str, Any, float | None]]:
        """One ``(key, audio, sr)`` per key left to run."""
        return [(key, pending[at[0]].audio, pending[at[0]].sr) for key, at in self.todo.items()]

    def first_positions(self) -> dict[str, int]:
        """Each key's first position in the input: what :func:`current_item` says for it."""
        return {key: positions[0] for key, positions in self.todo.items()}

    def stopped(self) -> bool:
        return self.write_failure is not None or self.early_stop is not None

    def _watch_first(self, result: Any) -> None:
        """Stop the batch when its first items to finish all failed with one configuration error."""
        if self.keep_going or self.early_stop is not None:
            return
        alike = isinstance(result, Exception) and _configuration_error(result) and all(
            type(e) is type(result) and str(e) == str(result) for e in self.leading_failures)
        if not alike:
            self.keep_going = True  # something worked, or the errors differ: failures are the items' own
            return
        self.leading_failures.append(result)
        if len(self.leading_failures) >= EARLY_STOP_ITEMS:
            self.early_stop = result
            logger.error("the first %d items all failed with %s: %s; starting no more items",
                         EARLY_STOP_ITEMS, type(result).__name__, result)

    def finished(self, key: str, result: Any) -> None:
        """Called on the caller's loop as each item ends: the checkpoint first, then the bar."""
        record: dict[str, Any] | None
        if isinstance(result, dict):  # a record from a cluster worker
            record, result = result, transcript_of(result)
        else:
            record = record_of(key, result) if isinstance(result, Transcript) else None
        if record is not None:
            self._write_checkpoint(key, record)
        for i in self.todo[key]:
            self.results[i] = result
        self._watch_first(result)
        if self.bar is not None:
            self.bar.update(len(self.todo[key]))

    def _write_checkpoint(self, key: str, record: dict[str, Any]) -> None:
        if self.store is None or self.write_failure is not None:
            return
        try:
            self.store.append({**record, "key": key, "fingerprint": self.prints[key]})
        except CheckpointError as exc:  # kept in memory; no new item starts; raised once all have ended
            self.write_failure = exc
            logger.error("%s: starting no more items; the running ones finish and are kept", exc)

    def log_interruption(self) -> None:
        done = sum(1 for r in self.results if isinstance(r, Transcript))
        where = f"in the checkpoint {str(self.store.path)!r}" if self.store is not None else (
            "not kept: pass checkpoint= to keep them across interrupts")
        logger.warning("transcribe_many interrupted: %d of %d items had finished, %s", done, len(self.results), where)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.store is not None:
            self.store.close()

    def outcome(self, wrap: Callable[[list[Any]], Any] | None, return_exceptions: bool) -> Any:
        """What :func:`transcribe_many` returns, or the error it raises, once every item has ended."""
        if self.write_failure is not None:
            raise _checkpoint_failure(self.write_failure, self.results, self.store)
        if self.early_stop is not None:
            raise _early_stop_failure(self.early_stop, self.results)
        if wrap is not None:
            return wrap(self.results)
        failed = [i for i, r in enumerate(self.results) if isinstance(r, Exception)]
        if failed and not return_exceptions:
            first = self.results[failed[0]]
            raise BatchError(
                f"{len(failed)} of {len(self.results)} items failed (first: item {failed[0]}: {first}); "
                "the others' transcripts are in .results",
                results=list(self.results),
            )
        return list(self.results)


async def _run_local(
    work: list[tuple[str, Any, float | None]],
    position: dict[str, int],
    finished: Any,
    client: Client,
    concurrency: int,
    kwargs: dict[str, Any],
    stopped: Any = lambda: False,
) -> None:
    """Run every item as a task behind a semaphore; on cancellation, cancel them and wait briefly.

    An item whose turn comes after ``stopped()`` turned true does not start (its result stays None).
    """
    gate = asyncio.Semaphore(concurrency)

    async def one(key: str, audio: Any, sr: float | None) -> None:
        _CURRENT_ITEM.set(position[key])  # this task's own context: the callbacks of this item see it
        async with gate:
            if stopped():
                return
            try:
                result: Any = await client.transcribe(audio, sr, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a per-item failure, reported in place
                result = exc
        finished(key, result)

    tasks = [asyncio.ensure_future(one(key, audio, sr)) for key, audio, sr in work]
    if not tasks:
        return
    try:
        await asyncio.wait(tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=CANCEL_GRACE)
        raise
    for task in tasks:
        task.result()  # an error of our own bookkeeping (e.g. a full disk for the checkpoint) surfaces here


def _configuration_error(exc: Exception) -> bool:
    """An error that every item would meet alike: the setup, not the audio."""
    if isinstance(exc, (AuthError, WorkerUnavailable, UsageError, MissingDependency)):
        return True
    return isinstance(exc, ConnectError) and not isinstance(exc, ConnectionLost)  # never opened: refused, no route


def _early_stop_failure(first: Exception, results: list[Any]) -> BatchError:
    """One error for a batch stopped by its first items' configuration error, holding every result."""
    done = sum(1 for r in results if isinstance(r, Transcript))
    not_started = sum(1 for r in results if r is None)
    error = BatchError(
        f"the first {EARLY_STOP_ITEMS} items failed with the same error, so the batch stopped: "
        f"{type(first).__name__}: {first}. {done} of {len(results)} items finished and are in .results "
        f"({not_started} did not start); fix the setup and run again, or pass keep_going=True to try every item",
        results=list(results),
    )
    error.__cause__ = first
    return error


def _checkpoint_failure(first: CheckpointError, results: list[Any], store: Checkpoint | None) -> CheckpointError:
    """One error for a batch whose checkpoint could not be written, holding every result."""
    done = sum(1 for r in results if isinstance(r, Transcript))
    not_started = sum(1 for r in results if r is None)
    written = len(store.done) if store is not None else 0
    return CheckpointError(
        f"{first}. {done} of {len(results)} items finished and are all in .results ({written} are in the file; "
        f"{not_started} did not start). Free some space or pass another checkpoint=, then run the same call "
        "again: it continues from the file.",
        path=first.path, results=list(results),
    )
