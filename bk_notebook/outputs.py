"""Output paths checked before any work, and files written whole.

A run that transcribes for an hour and then cannot write its result has lost the
hour: so every path a command will write (a result file, an output folder, a
checkpoint) is tried first, by creating and removing a file where it will go.
That catches what permission bits miss: a read-only mount, a full quota, root on
a read-only file system.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UsageError

__all__ = ["check_writable_file", "check_writable_folder", "write_text_atomically"]


def _try_writing_in(folder: Path, what: str, path: Path) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".bk-write-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path}: {exc.strerror or exc}") from None


def check_writable_file(path: str | os.PathLike[str], what: str = "the output") -> Path:
    """Refuse now, with one clear line, a file that could not be written later."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"cannot write {what} {path}: no such folder {folder} (create it first)")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"cannot write {what} {path}: the file is read-only")
    _try_writing_in(folder, what, path)
    return path


def check_writable_folder(path: str | os.PathLike[str], what: str = "the output folder") -> Path:
    """Create ``path`` (and its parents) if missing, then refuse it now if files cannot be written in it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
    _try_writing_in(path, what, path)
    return path


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``.

    A failure (a full disk) leaves the old file, or none, never half a file.
    """
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
