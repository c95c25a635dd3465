"""Fixtures for the real-browser tests: Debian's Chromium, a JupyterLab server, a fake microphone."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.jupyter import JupyterServer, chromium, launch
from helpers import FIXTURES, IN_CI, require

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).parent / "screenshots"
FAKE_MIC = FIXTURES / "mic_hello.wav"  # "hello world this is a speech recognition test", then 2.5 s of silence


@pytest.fixture(scope="session")
def browser_ready() -> None:
    require("playwright", "driving Chromium")
    if chromium() is None:
        message = "Chromium is not installed: apt-get install chromium (never 'playwright install')"
        if IN_CI:
            pytest.fail(message + "; .ci/run must install it")
        pytest.skip(message)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say why browser tests were skipped, without ``-rs``: a row of ``s`` alone hides the prerequisite."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        if "e2e/" not in report.nodeid.replace("\\", "/"):
            continue
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.write_sep("-", "browser tests skipped", yellow=True)
        for reason, count in reasons.items():
            terminalreporter.write_line(f"{count} browser test(s) skipped: {reason}", yellow=True)


@pytest.fixture(scope="session")
def jupyter(browser_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    require("jupyterlab", "the notebook front end")
    root = tmp_path_factory.mktemp("notebooks")
    for item in (ROOT / "notebooks").iterdir():
        if item.is_file():
            shutil.copy(item, root)
    server = JupyterServer(root, tmp_path_factory.mktemp("jupyter-home"))
    server.root = root  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    # Module scope: sync Playwright keeps an event loop running, which must be gone before asyncio tests run.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def _context(playwright: Any, tmp_path: Path, extra: list[str]) -> Any:
    return launch(playwright, tmp_path / "profile", extra)


@pytest.fixture
def page(playwright: Any, jupyter: JupyterServer, tmp_path: Path) -> Iterator[Any]:
    """A page whose microphone plays the committed speech WAV in a loop, permission granted."""
    context = _context(playwright, tmp_path, [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={FAKE_MIC}",
    ])
    yield context.new_page()
    context.close()


@pytest.fixture
def denied_page(playwright: Any, jupyter: JupyterServer, tmp_path: Path) -> Iterator[Any]:
    """A page whose microphone permission request is refused."""
    context = _context(playwright, tmp_path, ["--use-fake-device-for-media-stream", "--deny-permission-prompts"])
    yield context.new_page()
    context.close()


@pytest.fixture
def shoot() -> Any:
    SCREENSHOTS.mkdir(exist_ok=True)

    def shoot(page: Any, name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))

    shoot.folder = SCREENSHOTS  # type: ignore[attr-defined]
    return shoot
