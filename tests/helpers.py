"""What the tests share, imported by name (``from helpers import ...``) from any folder.

The ``conftest.py`` files hold fixtures and hooks only: there is one per folder, so ``import conftest``
would be ambiguous. Paths are computed once here, so a test file's depth in ``tests/`` never matters.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# One millisecond of a test's real-time waits, scaled by one factor (websockets' ``MS``): a logic test
# that needs "longer than the client's patience" shrinks that patience and waits a few hundred MS,
# not seconds. On a machine too slow for the margins, BK_TESTS_TIME_FACTOR=4 stretches them all.
MS = 0.001 * float(os.environ.get("BK_TESTS_TIME_FACTOR", "1"))


# What a test marked ``pure`` may not use: mutation testing runs the pure tests once per mutant, in
# parallel, and a server, a mount or a kernel there would cost minutes and flake (see TESTING.md).
NOT_PURE_FIXTURES = {"energy_server", "sphinx_server", "small_disk", "readonly_folder", "kernel", "jupyter", "page",
                     "dask_client"}


# Tests that share the browser's unit of work: one built documentation site (tests/project/docs_site.py
# builds it once per process) and the pages the e2e tests open in Chromium.
_WITH_THE_BROWSER = ("tests/project/test_docs.py",)


def unit_of_work(nodeid: str) -> str:
    """What ``pytest -n 2`` sends to one worker: the test's file, or ``"browser"`` (one Chromium at a time).

    A whole file goes to one worker, so its module fixtures (a PulseAudio, a Jupyter server, a kernel) start
    once.  xdist's own ``xdist_group`` cannot say this on pytest 9.2: it appends the group to a test id that
    pytest no longer lets it change, and the tests are spread one by one (pytest-xdist issue 1386).
    The scheduler that reads it is in ``conftest.py``.
    """
    path = nodeid.split("::", 1)[0]
    return "browser" if path.startswith("tests/e2e/") or path in _WITH_THE_BROWSER else path


def check_pure(nodeid: str, fixtures: set[str], markers: set[str]) -> None:
    """Refuse, at collection, a test marked ``pure`` that starts a server, mounts a disk or is slow."""
    wrong = sorted(fixtures & NOT_PURE_FIXTURES) + sorted(markers & {"slow", "e2e"})
    if wrong:
        raise pytest.UsageError(f"{nodeid} is marked pure but uses {', '.join(wrong)}")


def refuse_import(monkeypatch: Any, module: str, missing: str) -> None:
    """Make ``import module`` fail as it does when one of its own dependencies (``missing``) is not installed."""
    import builtins

    real_import = builtins.__import__

    def importer(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == module:
            raise ImportError(f"No module named {missing!r}", name=missing)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", importer)


def require(module: str, why: str) -> Any:
    """Import an optional test dependency; skip locally, fail under CI=true."""
    try:
        return __import__(module)
    except ImportError:
        if IN_CI:
            pytest.fail(f"{module} is required in CI ({why}); .ci/run must install it")
        pytest.skip(f"{module} not installed ({why}): pip install -e '.[dev]'")


def reply(kind: str, status: int = 200, **data: Any) -> str:
    bk: dict[str, Any] = {"service": "stt", "type": kind, "status": status, "message": "error message"}
    if data:
        bk["data"] = data
    return json.dumps({"bk": bk})


@contextlib.asynccontextmanager
async def scripted_server(handler: Callable[[Any], Awaitable[None]], **kwargs: Any) -> AsyncIterator[str]:
    """A real websockets server on 127.0.0.1, port 0, running ``handler`` per connection."""
    from websockets.asyncio.server import serve

    async with serve(handler, "127.0.0.1", 0, **kwargs) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/prod/stream"


@contextlib.contextmanager
def tmpfs(folder: Path, options: str) -> Any:
    """Mount a tmpfs with ``options`` on ``folder`` (root only); skip with a reason, or fail under CI."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        message = f"cannot mount a tmpfs ({options}) here: needs root with mount rights"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave: int) -> Path:
    """Fill ``folder``'s file system until about ``leave`` bytes are free; delete the returned file to free it."""
    filler = folder / "filler"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with filler.open("ab") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler
