"""How a test here waits for a process, a thread, a file or a signal: bounded polls, never a bare sleep.

A fixed ``sleep`` is either too short on a loaded machine (the test fails on correct code) or too
long everywhere else. A bounded poll returns as soon as the thing is true and fails, with what it
saw, only when it stayed false for the whole bound: the bound is a guard against a hang, not a
timing claim. TESTING.md ("Waiting in a test") says when to use which.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Call ``condition`` until it returns something truthy, or ``timeout`` seconds pass; return its last value.

    The caller asserts on the value, so a failure shows what was seen last.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def running(pids: Iterable[int]) -> list[int]:
    """The processes of ``pids`` that still run: a zombie has exited (only its exit code waits to be read)."""
    import psutil

    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def outliving(pids: Iterable[int], timeout: float = 10.0) -> list[int]:
    """The processes of ``pids`` still running after ``timeout`` seconds (empty once all have left).

    A child whose parent has exited is re-parented and reaped by the system a moment later, so
    "gone at the instant the parent returned" is a race; "gone within the bound" is the claim.
    """
    pids = list(pids)
    wait_until(lambda: not running(pids), timeout)
    return running(pids)


def live_threads(name: str) -> list[threading.Thread]:
    """Threads called ``name`` that are still alive (a joined thread stays listed for a moment)."""
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


@contextmanager
def default_sigint() -> Iterator[None]:
    """Python's own SIGINT handler (``KeyboardInterrupt``) for the block, then whatever was there.

    A process started from a background job inherits SIGINT as ignored, and then Python installs no
    handler: an interrupt delivered to it raises nothing. A test that presses Ctrl-C must not depend on
    how the suite was started, nor on what an earlier test left installed.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
