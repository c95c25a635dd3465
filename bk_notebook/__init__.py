"""bk_notebook: the bahasakita streaming speech-to-text service in Jupyter."""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

from .audio.convert import chunk_pcm, load_audio, open_audio, sample_path, sample_text, to_pcm16
from .client.auth import get_token
from .client.client import Client, Stream, transcribe, transcribe_sync
from .errors import (
    AudioError,
    AuthError,
    BatchError,
    BkError,
    CheckpointError,
    ClusterError,
    ConnectError,
    ConnectionLost,
    DeviceError,
    MissingDependency,
    ProtocolError,
    ServiceError,
    StreamTimeout,
    UsageError,
    WorkerUnavailable,
)
from .transcript import Transcript

if _TYPE_CHECKING:
    from .audio.soundcard import SoundCard
    from .batch.checkpoint import read_checkpoint
    from .batch.run import transcribe_many
    from .batch.scoring import evaluate
    from .server.local import LocalServer, local_server

# Loaded on first use (PEP 562): the local server, batch runs and sound devices are a third of
# what `import bk_notebook` would otherwise read, and a notebook that streams needs none of them.
_LAZY = {
    "SoundCard": ".audio.soundcard",
    "read_checkpoint": ".batch.checkpoint",
    "transcribe_many": ".batch.run",
    "evaluate": ".batch.scoring",
    "LocalServer": ".server.local",
    "local_server": ".server.local",
}
_SUBPACKAGES = {"batch", "cli", "display", "plot", "server", "widgets"}  # `bk.server` works without its import


def __getattr__(name: str) -> object:
    from importlib import import_module

    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
    elif name in _SUBPACKAGES:
        value = import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBPACKAGES)


__version__ = "0.2.0"

__all__ = [
    "AudioError",
    "AuthError",
    "BatchError",
    "BkError",
    "CheckpointError",
    "Client",
    "ClusterError",
    "ConnectError",
    "ConnectionLost",
    "DeviceError",
    "LocalServer",
    "MissingDependency",
    "ProtocolError",
    "ServiceError",
    "SoundCard",
    "Stream",
    "StreamTimeout",
    "Transcript",
    "UsageError",
    "WorkerUnavailable",
    "__version__",
    "chunk_pcm",
    "evaluate",
    "get_token",
    "load_audio",
    "local_server",
    "open_audio",
    "read_checkpoint",
    "sample_path",
    "sample_text",
    "to_pcm16",
    "transcribe",
    "transcribe_many",
    "transcribe_sync",
]
