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
    """Wait until the element shows ``needle``, in any case (Whisper writes "Hello World" or "Hello world")."""
    page.wait_for_function(
        "([css, needle]) => { const el = document.querySelector(css);"
        " return el && el.innerText.toLowerCase().includes(needle.toLowerCase()); }",
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
    assert "world" in finals.lower() and ("recognition" in finals.lower() or "hello" in finals.lower()), finals


def test_notebook7_live_microphone(page: Any, jupyter: JupyterServer, shoot: Any) -> None:
    finals = live_transcription(page, jupyter, f"/notebooks/{LIVE_NOTEBOOK}", shoot, "nb7-transcriber")
    assert "world" in finals.lower(), finals


def record_statuses(page: Any) -> None:
    """Keep every text the Transcriber's status shows from now on, in ``window.bkStatuses``."""
    page.evaluate("""css => {
        const el = document.querySelector(css);
        window.bkStatuses = [el.innerText];
        new MutationObserver(() => window.bkStatuses.push(el.innerText))
            .observe(el, {subtree: true, childList: true, characterData: true});
    }""", f"{VISIBLE} .bk-status")


def test_permission_denied_is_shown_and_nothing_hangs(denied_page: Any, jupyter: JupyterServer, shoot: Any) -> None:
    page = denied_page
    open_and_run(page, jupyter, f"/lab/tree/{LIVE_NOTEBOOK}?reset")
    page.wait_for_selector(f"{VISIBLE} .bk-transcriber", timeout=30_000)
    record_statuses(page)
    start = page.locator(f"{VISIBLE} .bk-transcriber .widget-hbox .widget-button").first
    start.click()
    wait_text(page, ".bk-mic-message", "permission denied", timeout=30_000)
    # The end state: the run is over (Start usable again) and the status shows the error.
    page.wait_for_function("css => { const b = document.querySelector(css); return b && !b.disabled; }",
                           arg=f"{VISIBLE} .bk-transcriber .widget-hbox .widget-button", timeout=30_000)
    wait_text(page, ".bk-status", "permission denied", timeout=30_000)
    jupyter.wait_idle()  # every message the kernel had for the page has been handled
    seen = page.evaluate("window.bkStatuses")
    first_error = next(i for i, text in enumerate(seen) if "error" in text)
    assert all("permission denied" in text.lower() for text in seen[first_error:]), seen  # it never moved away
    assert "permission denied" in text_of(page, ".bk-status").lower()
    shoot(page, "lab-permission-denied")


def server_sessions_ended(page: Any, jupyter: JupyterServer, cell: int, count: int) -> None:
    """Re-run the cell that prints how many sessions the server saw end, until it says ``count``."""
    cells = page.locator(f"{VISIBLE} .jp-Cell")
    needle = f"sessions ended: {count}"
    for _ in range(60):
        cells.nth(cell).click()
        page.keyboard.press("Control+Enter")  # run in place
        page.wait_for_timeout(300)
        jupyter.wait_idle()
        if needle in cells.nth(cell).locator(".jp-OutputArea-output").first.inner_text():
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"the server never said {needle!r}")


def test_rerunning_or_clearing_the_transcriber_cell_ends_its_session(page: Any, jupyter: JupyterServer,
                                                                      shoot: Any) -> None:
    cells = [
        "import logging\nimport bk_notebook as bk\nfrom bk_notebook.widgets import Transcriber\n"
        "server = bk.local_server(engine='energy')\nclient = bk.Client(server.url)\nserver_log = []\n"
        "class Keep(logging.Handler):\n    def emit(self, record):\n        server_log.append(record.getMessage())\n"
        "logging.getLogger('bk_notebook.server').addHandler(Keep())\n"
        "logging.getLogger('bk_notebook.server').setLevel(logging.INFO)",
        "tr = Transcriber(client)\ntr",
        "print('sessions ended:', sum(m.startswith('session ') for m in server_log))",
    ]
    notebook = {
        "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": c}
                  for c in cells],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (jupyter.root / "rerun.ipynb").write_text(json.dumps(notebook))  # type: ignore[attr-defined]
    open_and_run(page, jupyter, "/lab/tree/rerun.ipynb?reset", cells_to_run=2)
    start = f"{VISIBLE} .bk-transcriber .widget-button:has-text('Start')"

    def record() -> None:
        page.wait_for_selector(start, timeout=30_000)
        page.locator(start).first.click()
        wait_text(page, ".bk-status", "streaming", timeout=30_000)
        page.wait_for_function("css => document.querySelector(css)?.dataset.state === 'recording'",
                               arg=f"{VISIBLE} .bk-mic-button", timeout=30_000)

    record()
    server_sessions_ended(page, jupyter, 2, 0)
    # Re-execute the Transcriber cell while it records: the old session ends, the new widget is ready.
    page.locator(f"{VISIBLE} .jp-Cell").nth(1).click()
    page.keyboard.press("Control+Enter")
    page.wait_for_timeout(300)
    jupyter.wait_idle()
    wait_text(page, ".bk-status", "ready", timeout=30_000)
    server_sessions_ended(page, jupyter, 2, 1)
    shoot(page, "lab-transcriber-rerun")
    # Clearing the cell's output removes the widget's last view: that session ends too.
    record()
    page.locator(f"{VISIBLE} .jp-Cell").nth(1).locator(".jp-OutputArea").first.click(button="right")
    page.locator(".lm-Menu-itemLabel:text-is('Clear Cell Output')").first.click()
    page.wait_for_function("css => !document.querySelector(css)", arg=f"{VISIBLE} .bk-transcriber", timeout=10_000)
    server_sessions_ended(page, jupyter, 2, 2)


def test_transcribe_with_display_in_a_cell(page: Any, jupyter: JupyterServer, shoot: Any) -> None:
    notebook = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source":
             "import bk_notebook as bk\nserver = bk.local_server(engine='pocketsphinx')\n"
             "client = bk.Client(server.url)"},
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
    heard = set("".join(ch if ch.isalnum() else " " for ch in finals.lower()).split())
    assert {"world", "speech", "recognition", "sunny", "warm"} <= heard, finals  # the sample, both sentences
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
    assert "world" in finals.lower() or "recognition" in finals.lower(), finals
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
