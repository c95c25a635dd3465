"""Output paths checked before any work, and files written whole.

A run that transcribes for an hour and then cannot write its result has lost the
hour: so every path a command will write (a result file, an output folder, a
checkpoint) is tried first, by creating and removing a file where it will go.
That catches what permission bits miss: a read-only mount, a full quota, root on
a read-only file system.  No output may name an input (the same file by any path,
a symlink or a hard link): a transcript written over its recording destroys it.
A result file gets the mode any new file gets under the user's umask; a file it
replaces keeps its own mode.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .errors import UsageError

__all__ = ["check_not_an_input", "check_writable_file", "check_writable_folder", "create_beside",
           "write_text_atomically"]


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


def check_not_an_input(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]],
                       what: str = "the output") -> None:
    """Refuse an output that is one of the inputs (``os.path.samefile``: symlinks and hard links count)."""
    if not os.path.exists(path):
        return
    for source in inputs:
        try:
            same = os.path.samefile(path, source)
        except OSError:  # an input that is gone is reported as missing, elsewhere
            continue
        if same:
            also = "" if os.fspath(path) == os.fspath(source) else f" (the same file as {source})"
            raise UsageError(f"{what} {path} is one of the inputs{also}: writing it would destroy it; "
                             "give another file name")


def create_beside(path: Path) -> tuple[int, Path]:
    """A new temporary file beside ``path``, opened for writing, with a new file's mode under the umask.

    O_EXCL with 0o666, as ``open()`` creates files: the umask decides (``mkstemp`` would make it 0600).
    """
    while True:
        temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:  # a leftover of the same name: draw another
            continue


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``.

    A failure (a full disk) leaves the old file, or none, never half a file.  The new
    file has the mode of the file it replaces, or a new file's mode under the umask.
    """
    path = Path(path)
    fd, temporary = create_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            if path.exists():
                os.fchmod(handle.fileno(), path.stat().st_mode & 0o7777)  # a replaced file keeps its mode
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
