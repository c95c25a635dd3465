"""Drive a real ipykernel the way JupyterLab does (jupyter_client), and count what it holds.

``Kernel`` runs cells (optionally as a given notebook cell id, as JupyterLab sends it), starts
one without waiting, interrupts and restarts, and evaluates expressions back into the test as
JSON.  ``Resources`` counts threads, open fds, established TCP connections, listening ports and
child processes of a pid (psutil when installed, else /proc).  ``running_kernel()`` gives a
fresh kernel whose PYTHONPATH points at this repository (see its docstring for the fixture).

    k.run("import bk_notebook as bk")
    busy = k.start("import time; print('sleeping', flush=True); time.sleep(60)")
    k.wait_for_output(busy, "sleeping")
    k.interrupt()
    result = k.wait(busy)          # result.error["ename"] == "KeyboardInterrupt"
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import ROOT, require


@dataclass
class CellResult:
    """What one execution sent back: its streams, its error, and every iopub message seen meanwhile."""

    msg_id: str
    status: str = ""
    stdout: str = ""
    stderr: str = ""
    error: dict[str, Any] | None = None
    results: list[dict[str, Any]] = field(default_factory=list)

    def raise_for_error(self) -> CellResult:
        if self.error is not None:
            raise AssertionError(f"cell failed: {self.error['ename']}: {self.error['evalue']}\n"
                                 + "\n".join(self.error.get("traceback", [])))
        return self


@dataclass(frozen=True)
class Resources:
    threads: int
    fds: int
    established: int  # TCP connections in ESTABLISHED state
    listening: frozenset[int]  # TCP ports this process listens on
    children: frozenset[int]  # pids of child processes


class Kernel:
    """One ipykernel, started with ``PYTHONPATH`` = this repository, driven through jupyter_client."""

    def __init__(self, extra_env: dict[str, str] | None = None, startup_timeout: float = 120) -> None:
        from jupyter_client.manager import KernelManager

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env.pop("BK_TOKEN", None)
        env.update(extra_env or {})
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env=env, cwd=str(ROOT))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=startup_timeout)
        self._pending: dict[str, CellResult] = {}
        self._stray: list[dict[str, Any]] = []  # iopub messages of no cell we started (e.g. idle output)

    # ------------------------------------------------------------------ running code
    @property
    def pid(self) -> int:
        provisioner = self.manager.provisioner
        pid = getattr(provisioner, "pid", None) or getattr(getattr(provisioner, "process", None), "pid", None)
        assert pid, "no kernel pid"
        return int(pid)

    def start(self, code: str, cell_id: str | None = None) -> str:
        """Send ``code`` for execution without waiting; ``cell_id`` is sent as JupyterLab does."""
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": False}
        msg = self.client.session.msg("execute_request", content,
                                      metadata={"cellId": cell_id or f"cell-{uuid.uuid4().hex[:8]}"})
        self.client.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        self._pending[msg_id] = CellResult(msg_id)
        return msg_id

    def _pump(self, timeout: float) -> dict[str, Any] | None:
        try:
            msg = self.client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return None
        parent = msg.get("parent_header", {}).get("msg_id")
        result = self._pending.get(parent)
        kind, content = msg["msg_type"], msg["content"]
        if result is None:
            self._stray.append(msg)
        elif kind == "stream":
            if content["name"] == "stdout":
                result.stdout += content["text"]
            else:
                result.stderr += content["text"]
        elif kind == "error":
            result.error = content
        elif kind in ("execute_result", "display_data"):
            result.results.append(content)
        elif kind == "status" and content["execution_state"] == "idle":
            result.status = "done"
        return msg

    def wait(self, msg_id: str, timeout: float = 120) -> CellResult:
        """Wait until the kernel is idle after ``msg_id``; return what it printed and raised."""
        deadline = time.monotonic() + timeout
        result = self._pending[msg_id]
        while result.status != "done":
            if time.monotonic() > deadline:
                raise TimeoutError(f"cell still running after {timeout} s; output so far: {result.stdout!r}")
            self._pump(0.2)
        return result

    def wait_for_output(self, msg_id: str, needle: str, timeout: float = 60) -> None:
        """Wait until the running cell ``msg_id`` printed ``needle`` (to know it is busy now)."""
        deadline = time.monotonic() + timeout
        result = self._pending[msg_id]
        while needle not in result.stdout:
            if result.status == "done" or time.monotonic() > deadline:
                raise AssertionError(f"cell never printed {needle!r}: {result.stdout!r} {result.error}")
            self._pump(0.2)

    def run(self, code: str, timeout: float = 120, cell_id: str | None = None) -> CellResult:
        """Run a cell to its end; a cell that raised fails the test with the kernel's traceback."""
        return self.wait(self.start(code, cell_id), timeout).raise_for_error()

    def value(self, expression: str, timeout: float = 120) -> Any:
        """Evaluate ``expression`` in the kernel and bring its JSON value back."""
        marker = "@@value@@"
        out = self.run(f"import json as _json\nprint({marker!r} + _json.dumps({expression}))", timeout).stdout
        return json.loads(out.split(marker, 1)[1].strip())

    def wait_until(self, expression: str, timeout: float = 60) -> Any:
        """Re-evaluate ``expression`` in the kernel until it is truthy (the kernel's loop runs between)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.value(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.1)

    def stray_output(self) -> str:
        """Text printed by the kernel outside any cell we ran (e.g. a child's traceback)."""
        while self._pump(0.05) is not None:
            pass
        return "".join(m["content"].get("text", "") for m in self._stray if m["msg_type"] == "stream")

    # ------------------------------------------------------------------ control
    def interrupt(self) -> None:
        """What the toolbar's stop button does: SIGINT to the kernel's process group."""
        self.manager.interrupt_kernel()

    def restart(self) -> None:
        self.manager.restart_kernel(now=False)
        self.client.wait_for_ready(timeout=120)
        self._pending.clear()

    def resources(self) -> Resources:
        return resources_of(self.pid)

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


# ---------------------------------------------------------------------- counting
def resources_of(pid: int) -> Resources:
    try:
        import psutil
    except ImportError:
        return _resources_from_proc(pid)
    process = psutil.Process(pid)
    conns = process.net_connections(kind="tcp") if hasattr(process, "net_connections") else process.connections("tcp")
    return Resources(
        threads=process.num_threads(),
        fds=process.num_fds(),
        established=sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED),
        listening=frozenset(c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN),
        children=frozenset(child.pid for child in process.children(recursive=True)),
    )


def _resources_from_proc(pid: int) -> Resources:
    base = Path(f"/proc/{pid}")
    inodes = set()
    for fd in (base / "fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    established, listening = 0, set()
    for table in ("tcp", "tcp6"):
        path = base / "net" / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            parts = line.split()
            if parts[9] not in inodes:
                continue
            if parts[3] == "01":
                established += 1
            elif parts[3] == "0A":
                listening.add(int(parts[1].rsplit(":", 1)[1], 16))
    children = set()
    for task in (base / "task").iterdir():
        kids = (task / "children")
        if kids.exists():
            children.update(int(p) for p in kids.read_text().split())
    return Resources(
        threads=len(list((base / "task").iterdir())),
        fds=len(list((base / "fd").iterdir())),
        established=established,
        listening=frozenset(listening),
        children=frozenset(children),
    )


def settle(measure: Any, expected: Any, timeout: float = 30) -> Any:
    """Measure until it equals ``expected`` (threads and sockets end a little after the call that ends them)."""
    deadline = time.monotonic() + timeout
    value = measure()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        value = measure()
    return value


@contextlib.contextmanager
def running_kernel(extra_env: dict[str, str] | None = None) -> Iterator[Kernel]:
    """A fresh ipykernel, shut down afterwards; skipped locally (failed in CI) without ipykernel.

    Use it as a fixture in a test module::

        @pytest.fixture
        def kernel() -> Iterator[Kernel]:
            with running_kernel() as k:
                yield k
    """
    require("ipykernel", "the real-kernel tests")
    require("jupyter_client", "the real-kernel tests")
    k = Kernel(extra_env)
    try:
        yield k
    finally:
        k.shutdown()
