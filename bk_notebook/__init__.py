"""bk_notebook: the bahasakita streaming speech-to-text service in Jupyter."""

from __future__ import annotations

from .audio.convert import chunk_pcm, load_audio, open_audio, sample_path, to_pcm16
from .audio.soundcard import SoundCard
from .batch.checkpoint import read_checkpoint
from .batch.run import transcribe_many
from .batch.scoring import evaluate
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
from .server.local import LocalServer, local_server
from .transcript import Transcript

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
    "to_pcm16",
    "transcribe",
    "transcribe_many",
    "transcribe_sync",
]
