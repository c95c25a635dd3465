"""What a person sees: JupyterLab 4 and Notebook 7 in Chromium, a fake microphone playing speech.

Every assertion reads the page's DOM, never kernel internals.
"""

from __future__ import annotations

import json
from typing import Any

from e2e.jupyter import VISIBLE, JupyterServer

LIVE_NOTEBOOK = "02_live_microphone.ipynb"


def open_and_run(page: Any, jupyter: JupyterServer, url: str, cells_to_run: int | None = None) -> None:
    page.goto(f"{jupyter.base}{url}")
    page.wait_for_selector(f"{VISIBLE} .jp-Cell", timeout=90_000)
    jupyter.wait_idle()
    cells = page.locator(f"{VISIBLE} .jp-Cell")
    cells.nth(0).click()
    for _ in range(cells_to_run or cells.count()):  # one at a time: widget messages are handled when idle
        page.keyboard.press("Shift+Enter")
        page.wait_for_timeout(200)
        jupyter.wait_idle()


def text_of(page: Any, css: str) -> str:
    return page.locator(f"{VISIBLE} {css}").first.inner_text()


def wait_text(page: Any, css: str, needle: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "([css, needle]) => { const el = document.querySelector(css); return el && el.innerText.includes(needle); }",
        arg=[f"{VISIBLE} {css}", needle], timeout=timeout,
    )


def live_transcription(page: Any, jupyter: JupyterServer, url: str, shoot: Any, name: str) -> str:
    open_and_run(page, jupyter, url)
    page.wait_for_selector(f"{VISIBLE} .bk-transcriber", timeout=30_000)
    assert "status: ready" in text_of(page, ".bk-status")
    page.locator(f"{VISIBLE} .bk-transcriber .widget-button:has-text('Start')").click()
    # While the fake microphone plays, the live partial shows words.
    page.wait_for_function(
        "css => { const el = document.querySelector(css); return el && el.innerText.trim().length > 0; }",
        arg=f"{VISIBLE} .bk-partial", timeout=30_000,
    )
    assert "streaming" in text_of(page, ".bk-status")
    assert text_of(page, ".bk-mic-time").endswith(" s")
    wait_text(page, ".bk-finals", "world", timeout=30_000)  # a final arrives while still recording
    shoot(page, f"{name}-streaming")
    page.locator(f"{VISIBLE} .bk-transcriber").first.screenshot(path=str(shoot.folder / f"{name}-widget.png"))
    page.locator(f"{VISIBLE} .bk-transcriber .widget-button:has-text('Stop')").click()
    wait_text(page, ".bk-status", "done", timeout=30_000)
    shoot(page, f"{name}-done")
    return text_of(page, ".bk-finals")


def test_jupyterlab_live_microphone(page: Any, jupyter: JupyterServer, shoot: Any) -> None:
    finals = live_transcription(page, jupyter, f"/lab/tree/{LIVE_NOTEBOOK}?reset", shoot, "lab-transcriber")
    assert "world" in finals and ("recognition" in finals or "hello" in finals), finals


def test_notebook7_live_microphone(page: Any, jupyter: JupyterServer, shoot: Any) -> None:
    finals = live_transcription(page, jupyter, f"/notebooks/{LIVE_NOTEBOOK}", shoot, "nb7-transcriber")
    assert "world" in finals, finals


def test_permission_denied_is_shown_and_nothing_hangs(denied_page: Any, jupyter: JupyterServer, shoot: Any) -> None:
    page = denied_page
    open_and_run(page, jupyter, f"/lab/tree/{LIVE_NOTEBOOK}?reset")
    page.wait_for_selector(f"{VISIBLE} .bk-transcriber", timeout=30_000)
    page.locator(f"{VISIBLE} .bk-transcriber .widget-button:has-text('Start')").click()
    wait_text(page, ".bk-mic-message", "permission denied", timeout=30_000)
    wait_text(page, ".bk-status", "error", timeout=30_000)
    assert "permission denied" in text_of(page, ".bk-status").lower()
    # Nothing hangs: Start is usable again.
    page.wait_for_function(
        "css => { const b = document.querySelector(css); return b && !b.disabled; }",
        arg=f"{VISIBLE} .bk-transcriber .widget-hbox .widget-button", timeout=10_000,
    )
    shoot(page, "lab-permission-denied")


def test_transcribe_with_display_in_a_cell(page: Any, jupyter: JupyterServer, shoot: Any) -> None:
    notebook = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source":
             "import bk_notebook as bk\nserver = bk.local_server()\nclient = bk.Client(server.url)"},
            {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source":
             "t = await client.transcribe(bk.sample_path(), speed=4.0, display=True)"},
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (jupyter.root / "display_demo.ipynb").write_text(json.dumps(notebook))  # type: ignore[attr-defined]
    open_and_run(page, jupyter, "/lab/tree/display_demo.ipynb?reset")
    display = f"{VISIBLE} .bk-live-display"
    page.wait_for_selector(display, timeout=30_000)
    wait_text(page, ".bk-live-display .bk-progress-label", "8.4 / 8.4 s", timeout=30_000)
    label = page.locator(f"{display} .bk-progress-label").first.inner_text()
    assert label == "8.4 / 8.4 s", label  # the progress bar reached the end
    bar = page.locator(f"{display} .widget-hprogress .progress-bar").first.get_attribute("style") or ""
    assert "100%" in bar.replace(" ", ""), bar
    finals = page.locator(f"{display} .bk-finals").first.inner_text()
    assert "hello world" in finals and "weather" in finals, finals
    shoot(page, "lab-display")


def test_ipywebrtc_recorder_record_stop_transcript(page: Any, jupyter: JupyterServer, shoot: Any) -> None:
    # Run up to the cell that displays the Transcriber; the next cell would load a canned recording.
    open_and_run(page, jupyter, "/lab/tree/05_ipywebrtc_recorder.ipynb?reset", cells_to_run=4)
    transcriber = f"{VISIBLE} .bk-transcriber"
    page.wait_for_selector(f"{transcriber} .widget-play button", timeout=30_000)
    record = page.locator(f"{transcriber} .widget-play button").first
    record.click()
    page.wait_for_timeout(7_500)  # one pass of the fake microphone's sentence
    record.click()
    wait_text(page, ".bk-status", "done", timeout=60_000)
    finals = text_of(page, ".bk-finals")
    assert "world" in finals or "recognition" in finals, finals
    shoot(page, "lab-ipywebrtc-recorder")


def test_one_capture_per_microphone_even_when_displayed_twice(page: Any, jupyter: JupyterServer, shoot: Any) -> None:
    cells = ["import bk_notebook as bk\nfrom bk_notebook.widgets import Microphone\nmic = Microphone()\nmic",
             "mic  # the same widget model, a second view",
             "print(f'recorded {len(mic.recording) / 16000:.1f} s')"]
    notebook = {
        "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": c}
                  for c in cells],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (jupyter.root / "two_views.ipynb").write_text(json.dumps(notebook))  # type: ignore[attr-defined]
    open_and_run(page, jupyter, "/lab/tree/two_views.ipynb?reset", cells_to_run=2)
    buttons = page.locator(f"{VISIBLE} .bk-mic-button")
    page.wait_for_function("css => document.querySelectorAll(css).length === 2", arg=f"{VISIBLE} .bk-mic-button")
    buttons.nth(0).click()
    # Both views show the one capture: both say Stop and count time.
    page.wait_for_function("css => [...document.querySelectorAll(css)].every(b => b.dataset.state === 'recording')",
                           arg=f"{VISIBLE} .bk-mic-button", timeout=20_000)
    page.wait_for_timeout(3_000)
    elapsed = float(page.locator(f"{VISIBLE} .bk-mic-time").nth(1).inner_text().split()[0])
    buttons.nth(1).click()  # stop from the other view
    page.wait_for_function("css => [...document.querySelectorAll(css)].every(b => b.dataset.state === 'idle')",
                           arg=f"{VISIBLE} .bk-mic-button", timeout=20_000)
    shoot(page, "lab-microphone-two-views")
    page.locator(f"{VISIBLE} .jp-Cell").nth(2).click()
    page.keyboard.press("Shift+Enter")
    wait_text(page, ".jp-Cell:nth-child(3) .jp-OutputArea-output", "recorded", timeout=30_000)
    recorded = float(text_of(page, ".jp-Cell:nth-child(3) .jp-OutputArea-output").split()[1])
    # Two captures would have sent every 100 ms twice: twice the audio for the same time.
    assert 0.5 * elapsed <= recorded <= 1.5 * elapsed + 0.5, (recorded, elapsed)
