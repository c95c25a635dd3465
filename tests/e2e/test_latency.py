"""Latency as a person experiences it, measured in the page (not asserted: numbers go to BENCHMARKS.md).

    pytest tests/e2e/test_latency.py -s        # writes benchmarks/out/browser.json

The page records when each 3200-byte chunk leaves for the kernel (a wrapper around
WebSocket.send) and when the partial and the finals change in the DOM (a MutationObserver).
Chunk k carries session audio [k*0.1, (k+1)*0.1) s and leaves once its last sample was captured,
so audio at session time s was captured at send[k] - ((k+1)*0.1 - s).
- end of speech -> final in the DOM: the final's `end` is the end of speech in session time;
- chunk -> partial: with the energy engine a partial "sound L s" is caused by the chunk holding
  audio at start+L; its delay is the DOM time minus that chunk's send time;
- Whisper: the first words on screen after the Start click, and the final after a Stop pressed
  mid-phrase (click times from a listener in the page, DOM times from the observer).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from e2e.jupyter import VISIBLE, JupyterServer
from e2e.test_browser import open_and_run, wait_text
from helpers import require

OUT = Path(os.environ.get("BK_BENCH_OUT", Path(__file__).resolve().parents[2] / "benchmarks" / "out"))

HOOKS = """
if (!window.__bkSends) {  // init scripts accumulate across navigations: wrap once
  window.__bkSends = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    const size = data && (data.byteLength ?? data.size);
    if (typeof data !== "string" && size > 3200) window.__bkSends.push(performance.now());
    return send.call(this, data);
  };
}
"""

OBSERVE = """
(panel) => {
  window.__bkDom = [];
  let last = {partial: null, finals: null};
  const look = () => {
    const p = document.querySelector(panel + " .bk-partial"), f = document.querySelector(panel + " .bk-finals");
    const now = {partial: p ? p.innerText : "", finals: f ? f.innerText : ""};
    if (now.partial !== last.partial || now.finals !== last.finals) {
      window.__bkDom.push({t: performance.now(), ...now});
      last = now;
    }
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""


def notebook(engine: str) -> dict[str, Any]:
    source = ("import bk_notebook as bk\nfrom bk_notebook.widgets import Transcriber\n"
              f"server = bk.local_server(engine={engine!r})\nTranscriber(bk.Client(server.url))")
    return {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                       "source": source}],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def record(page: Any, jupyter: JupyterServer, engine: str, seconds: float) -> tuple[list[float], list[dict]]:
    name = f"latency_{engine}.ipynb"
    (jupyter.root / name).write_text(json.dumps(notebook(engine)))  # type: ignore[attr-defined]
    page.add_init_script(HOOKS)
    open_and_run(page, jupyter, f"/lab/tree/{name}?reset")
    page.wait_for_selector(f"{VISIBLE} .bk-transcriber", timeout=30_000)
    page.evaluate(OBSERVE, VISIBLE)
    page.locator(f"{VISIBLE} .bk-transcriber .widget-button:has-text('Start')").click()
    page.wait_for_timeout(seconds * 1000)
    page.locator(f"{VISIBLE} .bk-transcriber .widget-button:has-text('Stop')").click()
    wait_text(page, ".bk-status", "done", timeout=30_000)
    return page.evaluate("window.__bkSends"), page.evaluate("window.__bkDom")


def captured_at(sends: list[float], s: float) -> float:
    k = int(s / 0.1)
    return sends[k] - ((k + 1) * 0.1 - s) * 1000


def final_latencies(sends: list[float], dom: list[dict]) -> list[float]:
    seen: set[str] = set()
    out = []
    for event in dom:
        for line in event["finals"].splitlines()[1:]:
            cells = line.split("\t")
            if line in seen or len(cells) < 5:
                continue
            seen.add(line)
            end = float(cells[3])
            if int(end / 0.1) < len(sends):
                out.append(event["t"] - captured_at(sends, end))
    return out


def summary(values: list[float]) -> dict[str, float]:
    a = np.array(values)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1), "max_ms": round(float(a.max()), 1)}


CLICKS = """
if (!window.__bkClicks) {
  window.__bkClicks = [];
  const note = (e) => window.__bkClicks.push([performance.now(), e.target.innerText || ""]);
  document.addEventListener("click", note, true);
}
"""
MIC_SECONDS = 6.978  # tests/fixtures/mic_hello.wav, which the fake microphone loops: a phrase, then 2.5 s of silence


def whisper_start_and_stop(page: Any, jupyter: JupyterServer) -> dict[str, float]:
    """Start, then Stop in the middle of the phrase's second playing: first words on screen, and the final after Stop.

    The issue's measure of how the Whisper engine feels: the phrase begins as the capture starts, so
    first words count from the Start click; Stop goes 2 s into the second playing (mid-phrase).
    """
    require("faster_whisper", "the whisper engine")
    name = "latency_whisper.ipynb"
    (jupyter.root / name).write_text(json.dumps(notebook("whisper")))  # type: ignore[attr-defined]
    page.add_init_script(CLICKS)
    open_and_run(page, jupyter, f"/lab/tree/{name}?reset")
    page.wait_for_selector(f"{VISIBLE} .bk-transcriber", timeout=120_000)
    page.evaluate(OBSERVE, VISIBLE)
    page.locator(f"{VISIBLE} .bk-transcriber .widget-button:has-text('Start')").click()
    page.wait_for_timeout((MIC_SECONDS + 2.0) * 1000)
    page.locator(f"{VISIBLE} .bk-transcriber .widget-button:has-text('Stop')").click()
    wait_text(page, ".bk-status", "done", timeout=60_000)
    clicks, dom = page.evaluate("window.__bkClicks"), page.evaluate("window.__bkDom")
    start = next(t for t, label in clicks if "Start" in label)
    stop = next(t for t, label in clicks if "Stop" in label)
    shown = [(e["t"], e["partial"] + " ".join(e["finals"].splitlines()[1:])) for e in dom]  # the finals' header aside
    worded = [t for t, text in shown if t > start and re.search(r"[A-Za-z]{2}", text)]
    # The Stop's final is the second playing's (it starts at MIC_SECONDS), not a late one of the first.
    after = [e["t"] for e in dom if e["t"] > stop and any(
        len(cells := line.split("\t")) >= 5 and float(cells[2]) >= MIC_SECONDS - 0.5
        for line in e["finals"].splitlines()[1:])]
    assert worded and after, dom
    return {"first_words_after_start_ms": round(worded[0] - start, 1), "final_after_stop_ms": round(after[0] - stop, 1)}


def test_browser_latency(page: Any, jupyter: JupyterServer) -> None:
    sends, dom = record(page, jupyter, "energy", 15)
    assert len(sends) > 100 and dom
    # Chunk -> partial, attributed by the energy engine's "sound L s" and its final's start.
    partial_delays = []
    for i, event in enumerate(dom):
        match = re.search(r"sound ([\d.]+) s", event["partial"])
        later_final = next((e for e in dom[i:] if e["finals"].count("\n") > event["finals"].count("\n")), None)
        if not match or later_final is None:
            continue
        start = float(later_final["finals"].splitlines()[-1].split("\t")[2])
        # The last loud 10 ms frame is [start+L-0.01, start+L): the chunk holding it caused this partial.
        k = int((start + float(match.group(1)) - 0.005) / 0.1)
        if 0 <= k < len(sends) and event["t"] >= sends[k]:
            partial_delays.append(event["t"] - sends[k])
    energy_finals = final_latencies(sends, dom)
    assert partial_delays and energy_finals

    page.context.clear_cookies()
    sphinx_sends, sphinx_dom = record(page, jupyter, "pocketsphinx", 20)
    sphinx_finals = final_latencies(sphinx_sends, sphinx_dom)

    page.context.clear_cookies()
    whisper = whisper_start_and_stop(page, jupyter)
    result = {
        "chunk_to_partial_in_dom_energy": summary(partial_delays),
        "end_of_speech_to_final_in_dom_energy": summary(energy_finals),
        "end_of_speech_to_final_in_dom_pocketsphinx": summary(sphinx_finals),
        "whisper_start_and_stop": whisper,
        "note": "energy finals include its 0.3 s silence window; pocketsphinx finals include its endpointer",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "browser.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
