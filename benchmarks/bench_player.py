"""The transcript player in a real browser: from ``t.player(...)`` to the waveform drawn, and bytes sent.

    python -m benchmarks.bench_player [--minutes 10]

JupyterLab 4 in headless Chromium (tests/e2e/jupyter.py). A recording of ``--minutes`` (the sample
tiled) is transcribed by the local ``energy`` engine, then shown by one cell per audio format, in the
same page, one after the other (a small warm-up player first, so that loading the widget's code is
not charged to the first format).  Measured in the page from pressing Shift+Enter on the cell:

- ``drawn``: the waveform and one region per final drawn (``data-state="drawn"``), from peaks;
- ``playable``: the encoded audio received and the <audio> element ready (``data-audio="ready"``).

``bytes_sent`` is what the kernel sent to the page (``Player.bytes_sent``), and ``build_s`` the
kernel's time to build the widget (conversion and peaks).  WAV (uncompressed) is the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, save

sys.path.insert(0, str(ROOT / "tests"))
from e2e.jupyter import VISIBLE, JupyterServer, launch  # noqa: E402

FORMATS = ("opus", "flac", "wav")


def notebook(minutes: float) -> dict[str, Any]:
    cells = [
        "import time\nimport numpy as np\nimport bk_notebook as bk\nfrom bk_notebook.widgets.player import Player\n"
        "speech = bk.to_pcm16(bk.sample_path())\n"
        f"n = int({minutes} * 60 * 16000)\n"
        "audio = np.tile(speech, n // len(speech) + 1)[:n]\n"
        "server = bk.local_server(engine='energy')\n"
        "t = await bk.Client(server.url).transcribe(audio, sr=16000, speed=None)\n"
        "players, build = {}, {}\nprint(len(t.finals), 'finals')",
        "Player(t.finals[:2], audio[:16000 * 8], sr=16000)  # warm-up: the widget's code loads once per page",
    ]
    for fmt in FORMATS:
        cells.append(f"t0 = time.perf_counter()\nplayers[{fmt!r}] = p = Player(t, audio, sr=16000, "
                     f"audio_format={fmt!r})\nbuild[{fmt!r}] = time.perf_counter() - t0\np")
    cells.append("import json\nprint('RESULT', json.dumps({f: {'bytes_sent': p.bytes_sent, 'mime': p.mime, "
                 "'build_s': build[f], 'finals': len(p.finals)} for f, p in players.items()}))")
    return {
        "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": c}
                  for c in cells],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def run_cell(page: Any, server: JupyterServer, index: int) -> None:
    page.locator(f"{VISIBLE} .jp-Cell").nth(index).click()
    page.keyboard.press("Shift+Enter")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--screenshot", type=Path, help="save a picture of the last player here")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp) / "nb", Path(tmp) / "home"
        root.mkdir()
        (root / "bench.ipynb").write_text(json.dumps(notebook(args.minutes)))
        server = JupyterServer(root, home)
        results: dict[str, Any] = {}
        try:
            with sync_playwright() as p:
                context = launch(p, Path(tmp) / "profile", [])
                page = context.new_page()
                page.goto(f"{server.base}/lab/tree/bench.ipynb?reset")
                page.wait_for_selector(f"{VISIBLE} .jp-Cell", timeout=90_000)
                server.wait_idle()
                for i in (0, 1):
                    run_cell(page, server, i)
                    page.wait_for_timeout(300)
                    server.wait_idle(timeout=600)
                page.wait_for_selector(f"{VISIBLE} .bk-player[data-audio='ready']", timeout=120_000)
                for k, fmt in enumerate(FORMATS, start=2):
                    scope = f"{VISIBLE} .jp-Cell:nth-child({k + 1}) .bk-player"  # nth-child counts from 1
                    t0 = page.evaluate("performance.now()")
                    run_cell(page, server, k)
                    drawn = page.wait_for_function(
                        "css => document.querySelector(css + \"[data-state='drawn']\") && performance.now()",
                        arg=scope, polling="raf", timeout=600_000).json_value()
                    ready = page.wait_for_function(
                        "css => document.querySelector(css + \"[data-audio='ready']\") && performance.now()",
                        arg=scope, polling="raf", timeout=600_000).json_value()
                    # Regions created (those scrolled out of view are not in the DOM until they come in).
                    regions = int(page.locator(scope).first.get_attribute("data-regions") or 0)
                    results[fmt] = {"drawn_s": (drawn - t0) / 1000, "playable_s": (ready - t0) / 1000,
                                    "regions": regions}
                    server.wait_idle(timeout=600)
                if args.screenshot:
                    page.locator(f"{VISIBLE} .bk-player").last.screenshot(path=str(args.screenshot))
                run_cell(page, server, 2 + len(FORMATS))
                output = f"{VISIBLE} .jp-Cell:nth-child({3 + len(FORMATS)}) .jp-OutputArea-output"
                page.wait_for_function("css => (document.querySelector(css)?.innerText || '').includes('RESULT')",
                                       arg=output, timeout=120_000)
                text = page.locator(output).first.inner_text()
                kernel = json.loads(text.split("RESULT", 1)[1].strip().splitlines()[0])
                context.close()
        finally:
            server.stop()
    for fmt in FORMATS:
        results[fmt].update(kernel[fmt])
        results[fmt]["bytes_vs_wav"] = kernel[fmt]["bytes_sent"] / kernel["wav"]["bytes_sent"]
    save("player", {"minutes": args.minutes, "formats": results})


if __name__ == "__main__":
    main()
