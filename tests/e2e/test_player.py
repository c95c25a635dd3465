"""The transcript player in JupyterLab 4 and Notebook 7 (Chromium, autoplay allowed): see, click, hear.

Every assertion reads the page: the regions drawn, the <audio> element's currentTime and paused flag,
the highlighted line and region.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import FAKE_MIC
from e2e.jupyter import VISIBLE, JupyterServer, free_port, launch
from e2e.test_browser import open_and_run, text_of, wait_text
from helpers import require

AUTOPLAY = "--autoplay-policy=no-user-gesture-required"
PLAYER = f"{VISIBLE} .bk-player"
SAMPLE_FINALS = [(0.3, 3.69), (4.8, 7.62)]  # tests/widgets/test_player.py checks these against the real recogniser


@pytest.fixture
def player_page(playwright: Any, jupyter: JupyterServer, tmp_path: Path) -> Iterator[Any]:
    context = launch(playwright, tmp_path / "profile", [
        AUTOPLAY, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={FAKE_MIC}",
    ])
    yield context.new_page()
    context.close()


def write_notebook(jupyter: JupyterServer, name: str, cells: list[str]) -> None:
    notebook = {
        "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": c}
                  for c in cells],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (jupyter.root / name).write_text(json.dumps(notebook))  # type: ignore[attr-defined]


PLAYER_CELLS = [
    "import bk_notebook as bk\nserver = bk.local_server(engine='pocketsphinx')\nclient = bk.Client(server.url)\n"
    "t = await client.transcribe(bk.sample_path(), speed=None)\n"
    "print([(f['start'], f['end']) for f in t.finals])",
    "p = t.player(bk.sample_path())\np",
]


def finals_in_page(page: Any) -> list[tuple[float, float]]:
    text = page.locator(f"{VISIBLE} .jp-Cell").nth(0).locator(".jp-OutputArea-output").first.inner_text()
    return [tuple(pair) for pair in json.loads(text.replace("(", "[").replace(")", "]"))]


def wait_player(page: Any, scope: str = PLAYER) -> None:
    page.wait_for_selector(f"{scope}[data-state='drawn'][data-audio='ready']", timeout=60_000)


def audio_state(page: Any, scope: str = PLAYER) -> dict[str, Any]:
    return page.evaluate(
        "css => { const a = document.querySelector(css + ' audio'); "
        "return {time: a.currentTime, paused: a.paused, playStart: window.__bkPlayStart ?? null}; }", scope)


def arm_play_probe(page: Any, scope: str = PLAYER) -> None:
    """Record where the audio element lands on the next seek (a click sets currentTime, then plays)."""
    page.evaluate(
        "css => { const a = document.querySelector(css + ' audio'); window.__bkPlayStart = null; "
        "a.addEventListener('seeked', () => { window.__bkPlayStart = a.currentTime; }, {once: true}); }", scope)


def wait_playing(page: Any, scope: str = PLAYER) -> None:
    """Wait until the audio plays on from where the click put it (its time moves past that point)."""
    page.wait_for_function(
        "css => { const a = document.querySelector(css + ' audio'); const t0 = window.__bkPlayStart;"
        " return a && !a.paused && t0 !== null && a.currentTime > t0 + 0.2; }",
        arg=scope, timeout=20_000)


# wavesurfer draws into a shadow root: look for the regions there.
REGIONS_JS = ("(css) => { const host = [...document.querySelectorAll(css + ' .bk-player-wave *')]"
              ".find(e => e.shadowRoot); return host ? host.shadowRoot.querySelectorAll('.bk-player-region') : []; }")


def wait_current(page: Any, index: int, scope: str = PLAYER, timeout: float = 20_000) -> None:
    page.wait_for_function(
        "([css, i]) => { const lines = document.querySelectorAll(css + ' .bk-player-line.bk-current');"
        f" const regions = [...({REGIONS_JS})(css)].filter(r => r.classList.contains('bk-current'));"
        " return lines.length === 1 && lines[0].dataset.index === String(i)"
        " && regions.length === 1 && regions[0].dataset.index === String(i); }",
        arg=[scope, index], timeout=timeout)


def click_line_and_check(page: Any, index: int, start: float, scope: str = PLAYER) -> None:
    arm_play_probe(page, scope)
    # The line's time: a click on one of its words plays from that word instead (tested below).
    page.locator(f"{scope} .bk-player-line[data-index='{index}'] .bk-player-at").first.click()
    wait_playing(page, scope)
    played_from = audio_state(page, scope)["playStart"]
    assert abs(played_from - start) <= 0.1, (played_from, start)
    wait_current(page, index, scope)


def wait_audible(page: Any, scope: str = PLAYER) -> None:
    """Route the <audio> element through an analyser and wait for sound (not silence) to come out of it."""
    page.evaluate(
        "css => { const a = document.querySelector(css + ' audio'); if (a.__bkAnalyser) return;"
        " const ctx = new AudioContext(); const analyser = ctx.createAnalyser();"
        " ctx.createMediaElementSource(a).connect(analyser); analyser.connect(ctx.destination);"
        " a.__bkAnalyser = analyser; }", scope)
    page.wait_for_function(
        "css => { const an = document.querySelector(css + ' audio').__bkAnalyser;"
        " const x = new Float32Array(an.fftSize); an.getFloatTimeDomainData(x);"
        " return x.some(v => Math.abs(v) > 0.02); }", arg=scope, polling=50, timeout=20_000)


def regions_drawn(page: Any, scope: str = PLAYER) -> int:
    return page.evaluate(f"css => ({REGIONS_JS})(css).length", scope)


@pytest.mark.parametrize("front_end", ["lab", "nb7"])
def test_player_click_a_line_hear_it_highlight_follows(player_page: Any, jupyter: JupyterServer, shoot: Any,
                                                       front_end: str) -> None:
    page = player_page
    name = f"player_{front_end}.ipynb"
    write_notebook(jupyter, name, PLAYER_CELLS)
    open_and_run(page, jupyter, f"/lab/tree/{name}?reset" if front_end == "lab" else f"/notebooks/{name}")
    wait_player(page)
    finals = finals_in_page(page)
    assert len(finals) >= 2, finals
    # One region per final, one line per final.
    assert regions_drawn(page) == len(finals)
    assert page.locator(f"{PLAYER} .bk-player-line").count() == len(finals)
    shoot(page, f"{front_end}-player")

    # Clicking the second line plays from that final's start, and highlights it in both views.
    click_line_and_check(page, 1, finals[1][0])
    wait_audible(page)  # and sound comes out
    page.locator(PLAYER).first.screenshot(path=str(shoot.folder / f"{front_end}-player-widget.png"))

    # Space (with the player focused) pauses, and again resumes.
    page.locator(PLAYER).first.focus()
    page.keyboard.press("Space")
    page.wait_for_function("css => document.querySelector(css + ' audio').paused", arg=PLAYER, timeout=10_000)
    page.keyboard.press("Space")
    page.wait_for_function("css => !document.querySelector(css + ' audio').paused", arg=PLAYER, timeout=10_000)

    # Paused again, clicking the first region plays from the first final's start; the highlight
    # then follows playback into the second final without any click.
    page.keyboard.press("Space")
    page.wait_for_function("css => document.querySelector(css + ' audio').paused", arg=PLAYER, timeout=10_000)
    arm_play_probe(page)
    page.locator(f"{PLAYER} .bk-player-region[data-index='0']").first.click()
    wait_playing(page)
    assert abs(audio_state(page)["playStart"] - finals[0][0]) <= 0.1
    wait_current(page, 0)
    wait_current(page, 1, timeout=30_000)  # reached by playing on, 4-5 s later
    assert audio_state(page)["time"] >= finals[1][0] - 0.1


@pytest.mark.parametrize("front_end", ["lab", "nb7"])
def test_transcriber_shows_playback_after_stop(player_page: Any, jupyter: JupyterServer, shoot: Any,
                                               front_end: str) -> None:
    page = player_page
    notebook = "02_live_microphone.ipynb"
    open_and_run(page, jupyter, f"/lab/tree/{notebook}?reset" if front_end == "lab" else f"/notebooks/{notebook}")
    transcriber = f"{VISIBLE} .bk-transcriber"
    page.wait_for_selector(transcriber, timeout=30_000)
    assert page.locator(f"{transcriber} .bk-player").count() == 0  # nothing to play back yet
    page.locator(f"{transcriber} .widget-button:has-text('Start')").click()
    # The calibrated meter shows dBFS while recording.
    page.wait_for_function("css => /^-?\\d+ dBFS$/.test(document.querySelector(css)?.innerText || '')",
                           arg=f"{transcriber} .bk-mic-db", timeout=30_000)
    db = float(text_of(page, ".bk-transcriber .bk-mic-db").split()[0])
    assert -60 <= db <= 0, db
    assert page.locator(f"{transcriber} .bk-mic-clip").count() == 1
    wait_text(page, ".bk-finals", "world", timeout=30_000)
    page.locator(f"{transcriber} .widget-button:has-text('Stop')").click()
    wait_text(page, ".bk-status", "done", timeout=30_000)
    scope = f"{transcriber} .bk-playback .bk-player"
    wait_player(page, scope)
    # The play-back view holds exactly the run's finals, in order.
    rows = page.locator(f"{transcriber} .bk-finals tbody tr")
    table = [rows.nth(i).locator("td").last.inner_text() for i in range(rows.count())]
    lines = page.locator(f"{scope} .bk-player-text")
    assert [lines.nth(i).inner_text() for i in range(lines.count())] == table
    assert regions_drawn(page, scope) == len(table)
    starts = [float(rows.nth(i).locator("td").nth(2).inner_text()) for i in range(rows.count())]
    click_line_and_check(page, 0, starts[0], scope)
    page.locator(transcriber).first.screenshot(path=str(shoot.folder / f"{front_end}-transcriber-playback.png"))


WORD_CELLS = [
    PLAYER_CELLS[0] + "\nimport json\nprint(json.dumps([[w.segment, w.start, w.end, w.probability] for w in t.words]))",
    "p = t.player(bk.sample_path())  # low_probability 'auto': 0.5, the words carry probabilities\np",
]


def words_in_page(page: Any) -> list[list[float]]:
    text = page.locator(f"{VISIBLE} .jp-Cell").nth(0).locator(".jp-OutputArea-output").first.inner_text()
    return json.loads(text.strip().splitlines()[-1])


def current_word(page: Any, scope: str = PLAYER) -> str:
    return page.locator(scope).first.get_attribute("data-current-word") or ""


def click_word_and_check(page: Any, segment: int, j: int, start: float, scope: str = PLAYER) -> None:
    """Clicking a word plays from its start, and that word is the highlighted one."""
    arm_play_probe(page, scope)
    page.locator(f"{scope} .bk-player-word[data-index='{segment}'][data-word='{j}']").first.click()
    wait_playing(page, scope)
    played_from = audio_state(page, scope)["playStart"]
    assert abs(played_from - start) <= 0.1, (played_from, start)


@pytest.mark.parametrize("front_end", ["lab", "nb7"])
def test_player_words_follow_playback_and_a_click_on_a_word_seeks_there(player_page: Any, jupyter: JupyterServer,
                                                                         shoot: Any, front_end: str) -> None:
    page = player_page
    name = f"player_words_{front_end}.ipynb"
    write_notebook(jupyter, name, WORD_CELLS)
    open_and_run(page, jupyter, f"/lab/tree/{name}?reset" if front_end == "lab" else f"/notebooks/{name}")
    wait_player(page)
    words = words_in_page(page)
    assert len(words) >= 8, words
    assert page.locator(f"{PLAYER} .bk-player-word").count() == len(words)
    low = sum(1 for *_, p in words if p is not None and p < 0.5)
    assert page.locator(f"{PLAYER} .bk-player-word.bk-low").count() == low
    # The second final's words, numbered within it.
    second = [w for w in words if w[0] == 1]
    assert len(second) >= 3, words
    # Clicking its second word plays from that word's start; the highlight is on it, then moves on by
    # itself, word by word, as the audio plays.
    click_word_and_check(page, 1, 1, second[1][1])
    page.wait_for_function("css => document.querySelector(css).dataset.currentWord === '1:1'", arg=PLAYER,
                           timeout=10_000)
    assert page.locator(f"{PLAYER} .bk-current-word").count() == 1
    page.wait_for_function("css => document.querySelector(css).dataset.currentWord === '1:2'", arg=PLAYER,
                           timeout=20_000)
    at = audio_state(page)["time"]
    assert second[2][1] - 0.1 <= at, (at, second[2])
    page.locator(PLAYER).first.screenshot(path=str(shoot.folder / f"{front_end}-player-words.png"))
    # A word of the first final, clicked while playing: playback jumps back to it.
    first = [w for w in words if w[0] == 0]
    click_word_and_check(page, 0, len(first) - 1, first[-1][1])
    wait_current(page, 0)


# ------------------------------------------------------------------------------------- Voilà
VOILA_CELLS = [
    "import bk_notebook as bk\nfrom bk_notebook.widgets import Transcriber\n"
    "server = bk.local_server(engine='pocketsphinx')\nclient = bk.Client(server.url)",
    "Transcriber(client)",
]


@pytest.fixture
def voila(tmp_path: Path, browser_ready: None) -> Iterator[str]:
    """The notebook served as an app by Voilà on 127.0.0.1 (no token: loopback only, as the Lab fixture)."""
    require("voila", "serving notebooks as apps")
    root, home = tmp_path / "app", tmp_path / "home"
    root.mkdir()
    notebook = {
        "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": c}
                  for c in VOILA_CELLS],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (root / "app.ipynb").write_text(json.dumps(notebook))
    env = dict(os.environ)
    for var, sub in (("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_CONFIG_DIR", "config"), ("IPYTHONDIR", "ipython")):
        env[var] = str(home / sub)
    env.pop("BK_TOKEN", None)
    env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter")  # the widgets' front-end extensions
    port = free_port()
    log = open(tmp_path / "voila.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(root / "app.ipynb"), "--no-browser", f"--port={port}",
         "--Voila.ip=127.0.0.1", "--Voila.port_retries=0"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited: see {tmp_path / 'voila.log'}")
        try:
            with urllib.request.urlopen(f"{base}/api/status", timeout=2):
                break
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP answer (even 403/404): the server is up
                break
            if time.monotonic() > deadline:
                raise RuntimeError("voila did not start within 90 s") from exc
            time.sleep(0.5)
    yield base
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_voila_app_start_speak_stop_click_a_line_hear_it(player_page: Any, voila: str, shoot: Any) -> None:
    page = player_page
    page.goto(voila)
    transcriber = ".bk-transcriber"
    page.wait_for_selector(f"{transcriber} .bk-status", timeout=120_000)
    page.locator(f"{transcriber} .widget-button:has-text('Start')").click()
    page.wait_for_function(
        "css => (document.querySelector(css)?.innerText || '').toLowerCase().includes('world')",  # World or world
        arg=f"{transcriber} .bk-finals", timeout=60_000)
    page.locator(f"{transcriber} .widget-button:has-text('Stop')").click()
    page.wait_for_function("css => (document.querySelector(css)?.innerText || '').includes('done')",
                           arg=f"{transcriber} .bk-status", timeout=60_000)
    scope = f"{transcriber} .bk-playback .bk-player"
    wait_player(page, scope)
    rows = page.locator(f"{transcriber} .bk-finals tbody tr")
    assert rows.count() >= 1 and regions_drawn(page, scope) == rows.count()
    start = float(rows.nth(0).locator("td").nth(2).inner_text())
    click_line_and_check(page, 0, start, scope)
    wait_audible(page, scope)  # hear it: the run's recording, not silence, comes out
    shoot(page, "voila-transcriber-playback")
    # The run's words (PocketSphinx times them): a click on the last word of the first line plays from it.
    words = page.locator(f"{scope} .bk-player-word[data-index='0']")
    assert words.count() >= 2
    last = words.nth(words.count() - 1)
    word_start = float(last.get_attribute("data-start") or "nan")
    assert start <= word_start
    arm_play_probe(page, scope)
    last.click()
    wait_playing(page, scope)
    assert abs(audio_state(page, scope)["playStart"] - word_start) <= 0.1
    page.wait_for_function("css => (document.querySelector(css).dataset.currentWord || '').startsWith('0:')",
                           arg=scope, timeout=10_000)


def test_player_benchmark_runs_at_tiny_size(browser_ready: None, tmp_path: Path) -> None:
    """benchmarks/bench_player.py still runs (its numbers go to BENCHMARKS.md; none is asserted here)."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "BK_BENCH_OUT": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "benchmarks.bench_player", "--minutes", "0.3"], cwd=root, env=env,
                   check=True, capture_output=True, timeout=600)
    result = json.loads((tmp_path / "player.json").read_text())
    for fmt in ("opus", "flac", "wav"):
        row = result["formats"][fmt]
        assert row["regions"] == row["finals"] > 0 and row["bytes_sent"] > 0


def test_a_notebook_saved_from_jupyterlab_with_widget_state_stays_small(player_page: Any, jupyter: JupyterServer,
                                                                          shoot: Any) -> None:
    """JupyterLab's own save, with "save widget state" on: the player's audio and the token stay out."""
    token = "eyJhbGciOiJIUzI1NiJ9.lab-saved-notebook.NEVER-SAVED"
    root: Path = jupyter.root  # type: ignore[attr-defined]
    (root / "token.txt").write_text(token)  # read by the kernel, so the notebook's source never holds it
    request = urllib.request.Request(
        f"{jupyter.base}/lab/api/settings/@jupyter-widgets/jupyterlab-manager:plugin",
        data=json.dumps({"raw": json.dumps({"saveState": True})}).encode(), method="PUT",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
        pass
    name = "saved_player.ipynb"
    write_notebook(jupyter, name, [
        "import numpy as np\nimport bk_notebook as bk\nfrom bk_notebook.widgets import Transcriber\n"
        "token = open('token.txt').read()\n"
        "server = bk.local_server(engine='energy', tokens=(token,))\nclient = bk.Client(server.url, token=token)\n"
        "audio = np.tile(bk.to_pcm16(bk.sample_path()), 11)  # 92 s\n"
        "t = await client.transcribe(audio, sr=16000, speed=None)\ndel token\nTranscriber(client)",
        "p = t.player(audio, sr=16000)\np",
    ])
    page = player_page
    open_and_run(page, jupyter, f"/lab/tree/{name}?reset")
    wait_player(page)
    page.keyboard.press("Control+s")
    path = root / name
    deadline = time.monotonic() + 60
    while "application/vnd.jupyter.widget-state+json" not in path.read_text():
        assert time.monotonic() < deadline, "JupyterLab did not save the widget state"
        page.wait_for_timeout(500)
    saved = path.read_text()
    assert token not in saved and token[:24] not in saved
    states = json.loads(saved)["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    [player] = [m for m in states.values() if "finals" in m["state"] and "mime" in m["state"]]
    import bk_notebook as bk

    sample_seconds = len(bk.to_pcm16(bk.sample_path())) / 16000  # what the notebook tiled 11 times
    assert player["state"]["duration"] == pytest.approx(11 * sample_seconds, abs=0.01)  # the player was saved
    saved_buffers = sum(len(b.get("data", "")) for b in player.get("buffers", []))
    assert saved_buffers < 20_000  # the peaks (8 kB, base64), not the audio
    audio_bytes = 92 * 32000
    assert len(saved.encode()) < 250_000 < audio_bytes / 10  # the code (76 kB) and peaks, not the 2.9 MB of audio


def test_a_long_recording_scrolls_to_the_final_clicked(player_page: Any, jupyter: JupyterServer, shoot: Any) -> None:
    """Three minutes (43 finals) do not squeeze into the width: the waveform scrolls to the clicked final."""
    name = "player_long.ipynb"
    write_notebook(jupyter, name, [
        "import numpy as np\nimport bk_notebook as bk\nserver = bk.local_server(engine='energy')\n"
        "audio = np.tile(bk.to_pcm16(bk.sample_path()), 22)[: 180 * 16000]\n"
        "t = await bk.Client(server.url).transcribe(audio, sr=16000, speed=None)\n"
        "print(json.dumps([f['start'] for f in t.finals]))".replace("import numpy", "import json\nimport numpy"),
        "t.player(audio, sr=16000)",
    ])
    page = player_page
    open_and_run(page, jupyter, f"/lab/tree/{name}?reset")
    wait_player(page)
    starts = json.loads(page.locator(f"{VISIBLE} .jp-Cell").nth(0).locator(".jp-OutputArea-output").first.inner_text())
    assert len(starts) > 30
    assert int(page.locator(PLAYER).first.get_attribute("data-regions") or 0) == len(starts)
    assert regions_drawn(page) < len(starts)  # only the regions in view are in the page
    last = len(starts) - 1
    page.locator(f"{PLAYER} .bk-player-lines").first.evaluate("el => el.scrollTop = el.scrollHeight")
    click_line_and_check(page, last, starts[last])  # waits until that final's region is in view, highlighted
    page.locator(PLAYER).first.screenshot(path=str(shoot.folder / "lab-player-long.png"))


def test_the_level_meter_reads_each_chunks_rms_in_dbfs(player_page: Any, jupyter: JupyterServer) -> None:
    """The meter's number is the dBFS of the very chunk the kernel received (calibrated, not a guess)."""
    name = "meter.ipynb"
    write_notebook(jupyter, name, [
        "from bk_notebook.widgets import Microphone\nmic = Microphone()\nmic",
        "import json\nimport numpy as np\nx = mic.recording.astype(float) / 32768\n"
        "rms = [np.sqrt(np.mean(x[i:i + 1600] ** 2)) for i in range(0, len(x) - 1599, 1600)]\n"
        "print(json.dumps([max(-60.0, 20 * np.log10(max(r, 1e-9))) for r in rms]))",
    ])
    page = player_page
    open_and_run(page, jupyter, f"/lab/tree/{name}?reset", cells_to_run=1)
    page.locator(f"{VISIBLE} .bk-mic-button").first.click()
    readings: dict[int, float] = {}
    meter = f"{VISIBLE} .bk-mic-db"
    while len(readings) < 8:  # the fake microphone's sentence and its pauses
        page.wait_for_function("([css, n]) => Number(document.querySelector(css)?.dataset.seq ?? -1) > n",
                               arg=[meter, max(readings, default=-1) + 3], timeout=20_000)
        seq, db = page.evaluate("css => { const d = document.querySelector(css).dataset; return [d.seq, d.db]; }",
                                meter)
        readings[int(seq)] = float(db)
    page.locator(f"{VISIBLE} .bk-mic-button").first.click()
    page.wait_for_function("css => document.querySelector(css).dataset.state === 'idle'",
                           arg=f"{VISIBLE} .bk-mic-button", timeout=20_000)
    jupyter.wait_idle()
    page.locator(f"{VISIBLE} .jp-Cell").nth(1).click()
    page.keyboard.press("Shift+Enter")
    output = f"{VISIBLE} .jp-Cell:nth-child(2) .jp-OutputArea-output"
    page.wait_for_function("css => (document.querySelector(css)?.innerText || '').startsWith('[')", arg=output,
                           timeout=30_000)
    kernel = json.loads(page.locator(output).first.inner_text())
    assert any(db > -40 for db in readings.values()), readings  # speech was measured, not only silence
    for seq, db in readings.items():
        assert abs(kernel[seq] - db) < 0.1, (seq, db, kernel[seq])
