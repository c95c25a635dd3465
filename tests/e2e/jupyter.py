"""A JupyterLab server and a Chromium page for end-to-end tests, as BROWSER-TESTING.md describes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VISIBLE = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    """``jupyter lab`` on 127.0.0.1 with every state folder in ``home``; stopped with SIGTERM."""

    def __init__(self, root: Path, home: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        for var, sub in (("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_DATA_DIR", "data"),
                         ("JUPYTER_CONFIG_DIR", "config"), ("IPYTHONDIR", "ipython")):
            env[var] = str(home / sub)
        env.pop("BK_TOKEN", None)  # the notebooks use the embedded local server
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        # No "get notified about Jupyter news?" toast over the screenshots.
        settings = home / "lab-settings"
        news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        news.parent.mkdir(parents=True, exist_ok=True)
        news.write_text('{"fetchNews": "false", "checkForUpdates": false}')
        env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
        # The server's data dir is private, so point it at the environment's labextensions too.
        env["JUPYTER_PATH"] = os.pathsep.join([str(Path(sys.prefix) / "share" / "jupyter")])
        self.log = open(home / "jupyter.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--allow-root", "--no-browser", "--ip", "127.0.0.1",
             "--port", str(self.port), "--IdentityProvider.token=", "--ServerApp.password=",
             f"--ServerApp.root_dir={root}", "--ServerApp.disable_check_xsrf=True",
             "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: see {home / 'jupyter.log'}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/status", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("jupyter lab did not start within 90 s")

    def sessions(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.base}/api/sessions", timeout=5) as r:
            return json.loads(r.read())

    def wait_idle(self, timeout: float = 120, settle: float = 0.5) -> None:
        """Wait until a kernel exists and every kernel is idle (the toolbar can say idle too early)."""
        deadline = time.monotonic() + timeout
        idle_since = None
        while time.monotonic() < deadline:
            states = [s["kernel"]["execution_state"] for s in self.sessions()]
            if states and all(state == "idle" for state in states):
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= settle:
                    return
            else:
                idle_since = None
            time.sleep(0.2)
        raise TimeoutError(f"kernel not idle within {timeout} s: {self.sessions()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright: Any, profile: Path, extra_args: list[str]) -> Any:
    """A persistent Chromium context (Playwright refuses --user-data-dir in args)."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=chromium(), headless=True, args=[*CHROMIUM_FLAGS, *extra_args],
        viewport={"width": 1280, "height": 1000},
    )


def run_cells(page: Any, server: JupyterServer, count: int, selector: str) -> None:
    """Run the first ``count`` code cells one at a time: the kernel handles widget messages only when idle."""
    cells = page.locator(selector)
    for i in range(count):
        cells.nth(i).click()
        page.keyboard.press("Shift+Enter")
        page.wait_for_timeout(300)
        server.wait_idle()
