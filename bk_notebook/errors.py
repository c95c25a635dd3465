"""The one error tree of bk_notebook.

::

    BkError
    ├── AudioError (also ValueError)        bad audio: nothing was sent
    ├── UsageError (also ValueError)        bad arguments or configuration: nothing was sent
    │   └── NotAwaitedError (also AttributeError) a result's attribute asked of its coroutine (a missing ``await``)
    ├── MissingDependency (also ImportError) an optional extra is not installed
    ├── DeviceError (also OSError)          the sound card cannot be opened or failed while recording
    ├── ConnectError (also ConnectionError) the websocket could not be opened or was lost
    │   ├── AuthError                       handshake refused (HTTP 401/403) or token refused
    │   └── ConnectionLost                  the connection dropped after the session started
    ├── ServiceError                        the server answered ``status`` 400
    │   └── WorkerUnavailable               ``audioConn`` refused after every retry
    ├── ProtocolError                       a reply that does not follow the protocol
    ├── StreamTimeout (also TimeoutError)   the server did not answer in time
    ├── BatchError                          some items of ``transcribe_many`` failed
    ├── CheckpointError                     the checkpoint could not be written (a full disk)
    ├── ClusterError                        the Dask cluster cannot run the batch (no workers, scheduler lost)
    └── StateError (also RuntimeError)      a step its state machine does not allow: a bug in bk_notebook

Local mistakes (``AudioError``, ``UsageError``) are raised before any network
traffic.  Every error raised after ``audioConn`` succeeded carries
``.transcript``: the :class:`~bk_notebook.transcript.Transcript` of every final
received before the failure, so nothing already transcribed is lost.

No message built here ever contains a token: the client builds messages from
the redacted URL only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .transcript import Transcript

__all__ = [
    "AudioError",
    "AuthError",
    "BatchError",
    "BkError",
    "CheckpointError",
    "ClusterError",
    "ConnectError",
    "ConnectionLost",
    "DeviceError",
    "MissingDependency",
    "NotAwaitedError",
    "ProtocolError",
    "ServiceError",
    "StateError",
    "StreamTimeout",
    "UsageError",
    "WorkerUnavailable",
    "install_hint",
    "missing_extra",
]


class BkError(Exception):
    """Root of every error bk_notebook raises.

    Attributes
    ----------
    transcript : Transcript or None
        The finals received before the failure, when a session had started.
    """

    def __init__(self, message: str, *, transcript: Transcript | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transcript = transcript


class AudioError(BkError, ValueError):
    """The audio cannot be used; the message says what is wrong and what to do."""


class UsageError(BkError, ValueError):
    """An argument or setting is wrong; the message says which and how to fix it."""


class NotAwaitedError(UsageError, AttributeError):
    """An attribute of a result was asked of the coroutine that computes it (a forgotten ``await``)."""


class MissingDependency(BkError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def install_hint(extra: str) -> str:
    """The command that installs an extra: the one place it is spelled."""
    return f"pip install 'bk-notebook[{extra}]'"


def missing_extra(feature: str, needs: str, extra: str, exc: ImportError | None = None) -> MissingDependency:
    """The one way to say an optional extra is missing: what needs what, what is missing, the pip line.

    >>> str(missing_extra("evaluate", "jiwer and pandas", "eval"))
    "evaluate needs jiwer and pandas: pip install 'bk-notebook[eval]'"
    """
    missing = f" ({exc.name} is missing)" if exc is not None and exc.name and exc.name not in needs.split() else ""
    return MissingDependency(f"{feature} needs {needs}{missing}: {install_hint(extra)}")


class DeviceError(BkError, OSError):
    """No such input device, or one that is busy, gone, or cannot record at the asked rate."""


class ConnectError(BkError, ConnectionError):
    """The websocket could not be opened, or was lost."""


class AuthError(ConnectError):
    """The server refused the token (HTTP 401 or 403 at the handshake)."""


class ConnectionLost(ConnectError):
    """The connection closed before the ``audioStop`` reply arrived."""


class ServiceError(BkError):
    """The server answered with a failure status.

    Attributes
    ----------
    status : int
        The ``status`` field of the reply (400 in the service's documents).
    """

    def __init__(
        self, message: str, *, status: int = 400, transcript: Transcript | None = None
    ) -> None:
        super().__init__(message, transcript=transcript)
        self.status = status


class WorkerUnavailable(ServiceError):
    """``audioConn`` kept failing (no free worker) after every retry."""


class ProtocolError(BkError):
    """A reply was not valid JSON, was binary, lacked ``bk``, or had an unknown type."""


class StreamTimeout(BkError, TimeoutError):
    """The server did not answer within the configured timeout."""


class BatchError(BkError):
    """Some items of a batch failed; none of the others' results are lost.

    Attributes
    ----------
    results : list
        One entry per item, in order: a ``Transcript`` or the exception it raised.
    """

    def __init__(self, message: str, *, results: list[Any]) -> None:
        super().__init__(message)
        self.results = results

    @property
    def errors(self) -> dict[int, BaseException]:
        """Index of each failed item mapped to its exception."""
        return {i: r for i, r in enumerate(self.results) if isinstance(r, BaseException)}


class CheckpointError(BkError):
    """Writing a batch's checkpoint failed (a full disk, a lost mount); no result is lost.

    The batch stops starting items at the first failed write and lets the running ones
    finish.  The file keeps every line written before the failure, whole: the half line
    is rolled back, so a rerun with the same checkpoint continues from it.

    Attributes
    ----------
    results : list
        One entry per item, in order: a ``Transcript`` (finished, in the file or not),
        the exception it raised, or None (not started).
    path : str
        The checkpoint file.
    """

    def __init__(self, message: str, *, path: str, results: list[Any] | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.results = list(results or [])


class ClusterError(BkError):
    """The Dask cluster cannot run the batch: no worker joined in time, or the scheduler was lost.

    Attributes
    ----------
    results : list
        One entry per item, in order: a ``Transcript`` for each item that finished before
        (also in the checkpoint, when there is one), an exception, or None.
    """

    def __init__(self, message: str, *, results: list[Any] | None = None) -> None:
        super().__init__(message)
        self.results = list(results or [])


class StateError(BkError, RuntimeError):
    """A state machine was asked for a step its table does not allow (a Transcriber run's).

    Never the user's mistake: it names the two states so that the bug can be found.
    """
