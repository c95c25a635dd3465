"""Resumable batches: item keys and an append-only JSON Lines checkpoint.

Each finished item is one line, a JSON object with at least ``key``,
``complete`` and ``finals``, written whole and ``fsync``'d as the item
finishes, so a kernel that is interrupted, or a process that is killed, loses
at most the items in flight.  A torn last line (a kill during the write) is
dropped when the file is opened again: that item was not finished, and runs
again; but only after at least one whole record, so a file that is not a
checkpoint (a one-line note without a final newline) is refused, never emptied.
A failed write (a full disk) is rolled back at once, so the file stays
whole for the rerun.  Each line also holds a ``fingerprint`` of its input: a
key reused for other audio is transcribed again, not answered from the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, UsageError
from ..protocol import SAMPLE_RATE
from ..transcript import Transcript
from .inputs import BatchItem

logger = logging.getLogger("bk_notebook.batch.checkpoint")

__all__ = ["Checkpoint", "check_unambiguous_ids", "fingerprint", "item_key", "read_checkpoint", "record_of",
           "transcript_of"]


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
    parsed = BatchItem.of(item)
    if parsed.id is not None:
        return str(parsed.id)
    audio, sr = parsed.audio, parsed.sr
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


def check_unambiguous_ids(items: list[Any], keys: list[str]) -> None:
    """Refuse ids that differ only in type (``1`` and ``"1"``): they would share one checkpoint key.

    Numbers of any type are one kind (``1`` and ``np.int64(1)`` are the same id: a DataFrame's id
    column holds NumPy integers).
    """
    kinds: dict[str, tuple[str, Any]] = {}
    for item, key in zip(items, keys, strict=True):
        value = BatchItem.of(item).id
        if value is None:
            continue
        kind = "number" if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else (
            type(value).__name__)
        seen = kinds.setdefault(key, (kind, value))
        if seen[0] != kind:
            raise UsageError(f"the ids {seen[1]!r} and {value!r} differ only in type and would share the checkpoint "
                             f"key {key!r}; give every item an id of one type")


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


def fingerprint(audio: Any, sr: float | None = None) -> str:
    """A cheap fingerprint of an item's input, to notice a key reused for other audio.

    A file: its size, modification time and a hash of its first and last MiB (the whole
    file when it is smaller), so other audio given the same size and time (``touch -r``)
    is still told apart.  Bytes: their length and a hash of the first and last 64 KiB.
    An array: its dtype, shape, rate and a hash of its first and last second of samples.
    Computing it never reads a whole long recording.
    """
    if isinstance(audio, (str, os.PathLike)):
        try:
            return _file_fingerprint(audio)
        except OSError:
            return "file:missing"
    digest = hashlib.sha256()
    if isinstance(audio, (bytes, bytearray, memoryview)):
        data = memoryview(audio).cast("B")
        digest.update(data[:65536])
        digest.update(data[-65536:])
        return f"bytes:{len(data)}:{digest.hexdigest()[:16]}"
    array = np.asarray(audio)
    flat = array.reshape(-1)
    second = 2 * int(sr or SAMPLE_RATE)  # a second of stereo, two of mono: either way, cheap
    digest.update(np.ascontiguousarray(flat[:second]).tobytes())
    digest.update(np.ascontiguousarray(flat[-second:]).tobytes())
    rate = None if sr is None else float(sr)
    return f"array:{array.dtype.str}{array.shape}:sr={rate}:{digest.hexdigest()[:16]}"


_NOT_A_CHECKPOINT = "not a checkpoint; its bytes are left as they are (give the checkpoint a new file)"
_TREATED = f"Treated as {_NOT_A_CHECKPOINT}"
_EDGE = 1 << 20  # a file's first and last MiB: two reads, whatever its length


def _file_fingerprint(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        digest.update(f.read(_EDGE))
        if stat.st_size > _EDGE:
            f.seek(max(_EDGE, stat.st_size - _EDGE))
            digest.update(f.read(_EDGE))
    return f"file:{stat.st_size}:{stat.st_mtime_ns}:{digest.hexdigest()[:16]}"


def _checked(record: Any, where: str) -> dict[str, Any]:
    """A checkpoint line's record, its fields checked: a bad one is a UsageError naming file and line."""
    if not isinstance(record, dict) or not {"key", "complete", "finals"} <= record.keys():
        raise UsageError(f"{where} lacks 'key', 'complete' or 'finals'; is this a checkpoint? {_TREATED}")
    problems = []
    if isinstance(record["key"], bool) or not isinstance(record["key"], (str, int)):
        problems.append("'key' is not a string")  # (a whole number is read as its text, as bk always wrote it)
    if not isinstance(record["complete"], bool):
        problems.append("'complete' is not true or false")
    finals = record["finals"]
    if not isinstance(finals, list) or not all(isinstance(f, dict) and isinstance(f.get("text"), str) for f in finals):
        problems.append("'finals' is not a list of records with a 'text'")
    if not isinstance(record.get("duration", 0.0), (int, float)) or isinstance(record.get("duration"), bool):
        problems.append("'duration' is not a number")
    gaps = record.get("gaps", [])
    if not isinstance(gaps, list) or not all(isinstance(g, list) and len(g) == 2 and
                                             all(isinstance(x, (int, float)) for x in g) for g in gaps):
        problems.append("'gaps' is not a list of [start, end] pairs")
    if problems:
        raise UsageError(f"{where}: {'; '.join(problems)}; is this a checkpoint? (fix or delete that line)")
    return record


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every finished item of a checkpoint file, by key (a torn last line is ignored).

    A file is a checkpoint when it is missing, empty, or every complete line is a
    checkpoint record; a last line without its newline (torn by a kill mid-write) is
    ignored only after at least one whole record.  Anything else (bad bytes, bad JSON,
    wrong fields, no newline at all) is a :class:`UsageError` naming the file (and the
    line), and the file is not touched.  When a key appears twice, the later line wins
    (a rerun that transcribed an item again because its input had changed).
    """
    return _read_records(Path(path))[0]


def _read_records(file: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """The records by key, and the size of a torn last line (0: none)."""
    records: dict[str, dict[str, Any]] = {}
    if not file.exists():
        return records, 0
    lines = 0
    with file.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                if not lines:  # no whole record before it: a note, not a torn checkpoint
                    raise UsageError(f"{file} holds {len(line)} bytes and no whole line: {_NOT_A_CHECKPOINT}")
                return records, len(line)
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise UsageError(f"{file}: line {number} is not UTF-8 text (byte {exc.start + 1}); "
                                 f"is this a checkpoint? {_TREATED}") from None
            except json.JSONDecodeError as exc:
                raise UsageError(f"{file}: line {number} is not JSON ({exc.msg}); is this a checkpoint? "
                                 f"{_TREATED}") from None
            record = _checked(record, f"{file}: line {number}")
            records[str(record["key"])] = record
            lines += 1
    return records, 0


class Checkpoint:
    """An append-only checkpoint file, with one writer at a time.

    Each record goes out as one write of one whole line, then ``fsync``; a write that
    fails (a full disk) is rolled back to the last whole line, so the file never holds
    half a record in its middle.  The file is locked (``flock``) while open: a second
    writer, in another process or in this one, is refused at once instead of
    transcribing everything twice.

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
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot open the checkpoint {self.path}: {exc.strerror or exc}") from None
        try:
            _lock(self._fd, self.path)
            self.done, torn = _read_records(self.path)
            if torn:
                self._drop_torn_tail(torn)
        except BaseException:
            os.close(self._fd)
            raise

    def _drop_torn_tail(self, torn: int) -> None:
        """Cut the last line, torn by a kill mid-write, after the whole records before it."""
        logger.warning("%s: dropping a torn last line of %d bytes (an item that did not finish; it runs again)",
                       self.path, torn)
        os.ftruncate(self._fd, os.fstat(self._fd).st_size - torn)

    def append(self, record: dict[str, Any]) -> None:
        """Write one finished item's line and ``fsync`` it before returning.

        Raises
        ------
        CheckpointError
            The line could not be written whole; the file was rolled back to the line before.
        """
        line = json.dumps(record, ensure_ascii=False, allow_nan=False).encode() + b"\n"
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, end)  # shrinking needs no space: the half line goes
            except OSError:
                pass  # then it is the torn last line, which the next open drops
            raise CheckpointError(f"cannot write the checkpoint {self.path}: {exc.strerror or exc}",
                                  path=str(self.path)) from exc
        self.done[str(record["key"])] = record

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock
            self._fd = -1

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, {len(self.done)} items done)"


def _lock(fd: int, path: Path) -> None:
    """Take the file's exclusive lock, or refuse: another run is writing it."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; one writer is the user's to ensure
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UsageError(f"the checkpoint {path} is being written by another run (another process, or another "
                         "transcribe_many in this kernel); wait for it to finish, or give this run its own "
                         "checkpoint file") from None
