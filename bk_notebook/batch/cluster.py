"""Scale-out on Dask: ``transcribe_many(items, cluster=dask_client)``.

Theory of operation
-------------------
Each item is one Dask task (``transcribe_item``), so the scheduler spreads the
items over every worker thread of the cluster and re-runs a task elsewhere when
its worker dies (Dask's own resilience) or when it raises (``retries``).  A
task returns the item's checkpoint record, a plain dict; as each task finishes,
a done-callback hands it to the caller's event loop, which writes it to the
checkpoint and the progress bar (the batch run): the checkpoint has one writer.

On a worker, a task connects to the URL of the caller's ``Client`` (with its
token and timeouts), or, when the caller gave none, to an embedded
``local_server`` that the worker process starts on first use and keeps, one
per process, with as many engine workers as the Dask worker has threads: so
offline decoding scales with the cluster's cores.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..client.blocking import run_blocking
from ..client.client import Client
from ..errors import ClusterError, UsageError, missing_extra
from .checkpoint import record_of

__all__ = ["WorkerSettings", "check_cluster", "embedded_servers", "run_on_cluster", "transcribe_item"]

_servers: dict[tuple[tuple[str, Any], ...], Any] = {}  # one embedded server per worker process and settings
_servers_lock = threading.Lock()


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to transcribe: where to connect, or what server to start.

    The token is sent to the workers inside this object (pickled over Dask's
    comms: use TLS between scheduler and workers on an untrusted network) and
    never appears in its repr.
    """

    url: str | None
    token: str | None = field(default=None, repr=False)
    client_options: dict[str, Any] = field(default_factory=dict)
    server_options: tuple[tuple[str, Any], ...] = (("engine", "auto"),)
    transcribe_options: dict[str, Any] = field(default_factory=dict)


def _worker_url(settings: WorkerSettings) -> str:
    if settings.url is not None:
        return settings.url
    from ..server.local import local_server

    with _servers_lock:
        server = _servers.get(settings.server_options)
        if server is None or not server.running:
            options = dict(settings.server_options)
            options.setdefault("workers", max(4, _worker_threads()))
            server = _servers[settings.server_options] = local_server(**options)
    return str(server.url)


def embedded_servers() -> list[str]:
    """The URLs of the local servers this process started for a cluster's items (one per set of options).

    Run it on the workers (``dask_client.run(embedded_servers)``) to see which server each one uses.
    """
    with _servers_lock:
        return [str(server.url) for server in _servers.values() if server.running]


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return 1


def transcribe_item(key: str, audio: Any, sr: float | None, settings: WorkerSettings) -> dict[str, Any]:
    """The Dask task: transcribe one item on this worker and return its checkpoint record."""
    client = Client(_worker_url(settings), settings.token, **settings.client_options)
    # On a private loop in a thread of its own: Dask's task threads have no loop, but a caller
    # such as Client.run may call this on a running one.
    transcript = run_blocking(client.transcribe(audio, sr, **settings.transcribe_options))
    return record_of(key, transcript)


def _check_worker_languages(server: dict[str, Any]) -> None:
    """The workers' engine, model and language, checked here before any task is sent.

    Whether "auto" will be Whisper on the workers cannot be told from here: it is checked as Whisper
    (the only engine a language other than English needs), so a code or model that cannot work is
    refused now, and a worker without Whisper says so itself.
    """
    from ..server.engines.languages import check_engine_languages

    engine = str(server.get("engine") or "auto")
    check_engine_languages("whisper" if engine == "auto" else engine,
                           {k: server[k] for k in ("language", "model") if server.get(k) is not None})


def _settings(client: Client | None, worker_server: dict[str, Any] | None, kwargs: dict[str, Any]) -> WorkerSettings:
    if client is None:
        server = {"engine": "auto", **(worker_server or {})}
        if server.get("processes"):
            raise UsageError("worker_server processes=True: Dask worker processes cannot start engine processes; "
                             "scale with more Dask worker processes instead")
        _check_worker_languages(server)
        return WorkerSettings(url=None, server_options=tuple(sorted(server.items())), transcribe_options=kwargs)
    if worker_server:
        raise UsageError("worker_server= applies when no client is given (each worker starts its own server)")
    if client.ssl is not None:
        raise UsageError("an ssl= context cannot be sent to Dask workers; install the CA on the workers instead")
    return WorkerSettings(
        url=client.url, token=client.settings.token, transcribe_options=kwargs,
        client_options=client.settings.worker_options(),
    )


def _outcome(future: Any) -> Any:
    """The record a finished task returned, or the exception it ended with (blocking: run in a thread)."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a per-item failure, reported in place
        return exc
    except BaseException as exc:  # noqa: BLE001 - e.g. a task cancelled on the cluster
        return RuntimeError(f"the task was cancelled on the cluster: {exc!r}")


def check_cluster(
    cluster: Any, client: Client | None, worker_server: dict[str, Any] | None, kwargs: dict[str, Any]
) -> WorkerSettings:
    """Check the cluster and the settings before anything is written or sent; return the workers' settings."""
    try:
        from distributed import Client as DaskClient
    except ImportError as exc:
        raise missing_extra("cluster=", "Dask", "dask", exc) from exc
    if not isinstance(cluster, DaskClient):
        raise UsageError(f"cluster must be a dask.distributed.Client, e.g. Client(LocalCluster()); "
                         f"got {type(cluster).__name__}")
    if getattr(cluster, "asynchronous", False):
        raise UsageError("cluster must be a synchronous dask.distributed.Client (asynchronous=False)")
    return _settings(client, worker_server, kwargs)


async def run_on_cluster(
    cluster: Any,
    work: list[tuple[str, Any, float | None]],
    finished: Callable[[str, Any], None],
    *,
    client: Client | None = None,
    worker_server: dict[str, Any] | None = None,
    retries: int = 2,
    worker_timeout: float = 60.0,
    **kwargs: Any,
) -> None:
    """Submit one task per item to ``cluster`` and call ``finished(key, record or exception)`` as each ends.

    Parameters
    ----------
    cluster : distributed.Client
        A synchronous Dask client (``Client(LocalCluster())``, ``Client("tcp://scheduler:8786")``).
    work : list of (key, audio, sr)
        The items; paths must be readable on the workers (a shared filesystem).
    finished : callable
        Called on the caller's event loop with each item's record dict, or its exception.
    client : Client, optional
        Workers connect to its URL with its token and settings; else each starts a local server.
    worker_server : dict, optional
        Arguments of each worker's ``local_server`` (default ``{"engine": "auto"}``).
    retries : int
        Times Dask re-runs a task that raised (a dead worker's tasks are re-run regardless).
    worker_timeout : float
        Seconds to wait for a first worker, and the longest the cluster may have none while
        items are left; then :class:`ClusterError`.  A lost scheduler is a ``ClusterError`` too.
    **kwargs
        Passed to :meth:`Client.transcribe` on the workers (``speed``, ...).
    """
    settings = check_cluster(cluster, client, worker_server, kwargs)
    if not work:
        return
    await asyncio.to_thread(_wait_for_a_worker, cluster, worker_timeout)
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    futures = []
    for key, audio, sr in work:
        # The audio travels inside the task (not scattered): the scheduler keeps it, so a task whose
        # worker died can run again elsewhere; scattered data would die with that worker.
        future = cluster.submit(transcribe_item, key, audio, sr, settings, pure=False, retries=retries)
        future.add_done_callback(lambda f, key=key: loop.call_soon_threadsafe(ready.put_nowait, (key, f)))
        futures.append(future)
    try:
        for _ in futures:
            key, future = await _next_done(cluster, ready, worker_timeout)
            if future.status == "cancelled" and cluster.status != "running":
                raise ClusterError(f"lost the Dask scheduler {_address(cluster)} (the client is {cluster.status}); "
                                   "the items that finished before are kept (and in the checkpoint, if any): "
                                   "restart the cluster and run the same call again")
            finished(key, await asyncio.to_thread(_outcome, future))
    except ClusterError:
        raise  # nothing to cancel on a scheduler that is gone or has no workers
    except BaseException:
        cluster.cancel(futures, asynchronous=False)
        raise


def _address(cluster: Any) -> str:
    return str(getattr(cluster.scheduler, "address", None) or "(unknown address)")


def _workers(cluster: Any) -> int:
    try:
        return len(cluster.scheduler_info().get("workers", {}))
    except Exception:  # noqa: BLE001 - a scheduler that cannot answer has no workers for us
        return 0


def _wait_for_a_worker(cluster: Any, timeout: float) -> None:
    """Return once the cluster has a worker; raise ClusterError after ``timeout`` seconds without one."""
    try:
        cluster.wait_for_workers(1, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - distributed raises its own timeout types
        raise ClusterError(f"no Dask worker joined the scheduler {_address(cluster)} within {timeout:g} s (it has "
                           f"{_workers(cluster)} workers): start some (`dask worker {_address(cluster)}`), or pass a "
                           f"longer worker_timeout=") from exc


async def _next_done(cluster: Any, ready: asyncio.Queue[tuple[str, Any]], worker_timeout: float) -> tuple[str, Any]:
    """The next finished task; a cluster that has had no worker for ``worker_timeout`` s is an error."""
    loop = asyncio.get_running_loop()
    without_workers_since: float | None = None
    while True:
        try:
            return await asyncio.wait_for(ready.get(), timeout=min(5.0, worker_timeout))
        except asyncio.TimeoutError:
            pass
        if await asyncio.to_thread(_workers, cluster):
            without_workers_since = None
            continue
        without_workers_since = without_workers_since or loop.time()
        if loop.time() - without_workers_since >= worker_timeout:
            raise ClusterError(f"the Dask scheduler {_address(cluster)} has had no worker for {worker_timeout:g} s "
                               "with items left: the items that finished are kept; start workers and run the same "
                               "call again")
