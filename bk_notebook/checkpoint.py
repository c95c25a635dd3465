"""Resumable batches: item keys and an append-only JSON Lines checkpoint.

Each finished item is one line, a JSON object with at least ``key``,
``complete`` and ``finals``, written and ``fsync``'d as the item finishes, so
a kernel that is interrupted, or a process that is killed, loses at most the
items in flight.  A torn last line (a kill during the write) is dropped when
the file is opened again: that item was not finished, and runs again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .transcript import Transcript

__all__ = ["Checkpoint", "item_key", "read_checkpoint", "record_of", "transcript_of"]


def item_key(item: Any) -> str:
    """The key of a batch item: its ``"id"``, its path, or a hash of its content.

    Parameters
    ----------
    item : Any
        A path, encoded bytes, an ``(array, sr)`` pair, or a dict with
        ``"audio"`` (and optional ``"sr"`` and ``"id"``).

    Returns
    -------
    str
        ``str(id)`` for a dict with an ``"id"``; ``os.fspath(path)`` for a
        path; ``"sha256:..."`` of the samples, dtype, shape and rate for an
        array, or of the bytes for encoded bytes.
    """
    sr = None
    if isinstance(item, dict):
        if item.get("id") is not None:
            return str(item["id"])
        audio, sr = item.get("audio"), item.get("sr")
    elif isinstance(item, tuple) and len(item) == 2:
        audio, sr = item
    else:
        audio = item
    if isinstance(audio, (str, os.PathLike)):
        return os.fspath(audio)
    digest = hashlib.sha256()
    if isinstance(audio, (bytes, bytearray, memoryview)):
        digest.update(bytes(audio))
    else:
        array = np.ascontiguousarray(np.asarray(audio))
        rate = None if sr is None else float(sr)  # 16000 and 16000.0 are one rate
        digest.update(f"{array.dtype.str}{array.shape}sr={rate}".encode())
        digest.update(array.tobytes())
    return f"sha256:{digest.hexdigest()[:32]}"


def record_of(key: str, transcript: Transcript) -> dict[str, Any]:
    """The checkpoint line of a finished item."""
    return {
        "key": key,
        "complete": bool(transcript.complete),
        "finals": transcript.records(),
        "text": transcript.text,
        "duration": round(transcript.duration, 3),
        "session_id": transcript.session_id,
        "gaps": [list(gap) for gap in transcript.gaps],
    }


def transcript_of(record: dict[str, Any]) -> Transcript:
    """A :class:`Transcript` rebuilt from a checkpoint line."""
    return Transcript(
        finals=[dict(r) for r in record["finals"]],
        session_id=record.get("session_id"),
        duration=float(record.get("duration", 0.0)),
        gaps=[(float(a), float(b)) for a, b in record.get("gaps", [])],
        complete=bool(record["complete"]),
    )


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every finished item of a checkpoint file, by key (a torn last line is ignored)."""
    records: dict[str, dict[str, Any]] = {}
    file = Path(path)
    if not file.exists():
        return records
    with file.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                break  # torn by a kill mid-write: that item did not finish
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{file}: line {number} is not JSON ({exc.msg}); is this a checkpoint?") from None
            if not isinstance(record, dict) or not {"key", "complete", "finals"} <= record.keys():
                raise UsageError(f"{file}: line {number} lacks 'key', 'complete' or 'finals'; is this a checkpoint?")
            records[str(record["key"])] = record
    return records


class Checkpoint:
    """An append-only checkpoint file; one writer at a time.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON Lines file; created if missing, continued if present.

    Attributes
    ----------
    done : dict
        The records already in the file, by key.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise UsageError(f"checkpoint must be a file, got the directory {self.path}")
        self.done = read_checkpoint(self.path)
        self._drop_torn_tail()
        self._file = self.path.open("ab")

    def _drop_torn_tail(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, record: dict[str, Any]) -> None:
        """Write one finished item's line and ``fsync`` it before returning."""
        line = json.dumps(record, ensure_ascii=False, allow_nan=False).encode() + b"\n"
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.done[str(record["key"])] = record

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, {len(self.done)} items done)"
