"""Make the docs' pictures of the widgets, and the recording of live transcription, in a real browser.

Usage (from the repository root; needs Debian's ``chromium`` and ``ffmpeg``, and the ``[dev]`` extra)::

    python -m tools.make_pictures    # writes docs/plot.png, transcriber.png, transcriber-playback.png,
                                     # player.png, transcriber.gif and docs/_static/transcriber.webm

JupyterLab runs a notebook on the embedded local server with its default engine (``auto``: Whisper
where installed). Chromium's fake microphone plays the bundled natural-voice sample
(``bk.sample_path()``), the Transcriber is started, and its view is captured every ``FRAME_SECONDS``
while the partials grow and the finals land; then it is stopped. The frames become a GIF (the README)
and a WebM (the site), each frame shown for as long as it was on screen. Run it again whenever a
widget's look changes. Nothing here is fetched from the network.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
STATIC = DOCS / "_static"  # the site serves the WebM from here (a <video>, not an image)
sys.path.insert(0, str(ROOT / "tests"))  # the browser tests' JupyterLab and Chromium helpers

import bk_notebook as bk  # noqa: E402

from e2e.jupyter import VISIBLE, JupyterServer, launch  # noqa: E402

FRAME_SECONDS = 0.25  # a frame every quarter second: partials change about once a second
FRAME_HEIGHT = 210  # pixels
TRANSCRIBER = f"{VISIBLE} .bk-transcriber"
PLAYER = f"{VISIBLE} .bk-player"
LIVE_CELLS = [
    "import bk_notebook as bk\nfrom bk_notebook.widgets import Transcriber\n\n"
    "server = bk.local_server()        # the default engine\nclient = bk.Client(server.url)\n"
    "transcriber = Transcriber(client)\ntranscriber",
]
PLAYER_CELLS = [
    "import bk_notebook as bk\nserver = bk.local_server()\nclient = bk.Client(server.url)\n"
    "t = await client.transcribe(bk.sample_path(), speed=None)\nt.player(bk.sample_path())",
]


def write_notebook(folder: Path, name: str, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / name)


def open_and_run(page: Any, jupyter: JupyterServer, name: str) -> None:
    page.goto(f"{jupyter.base}/lab/tree/{name}?reset")
    page.wait_for_selector(f"{VISIBLE} .jp-Cell", timeout=90_000)
    jupyter.wait_idle()
    page.locator(f"{VISIBLE} .jp-Cell").nth(0).click()
    page.keyboard.press("Control+Enter")  # run in place: no new empty cell below the view
    page.wait_for_timeout(300)
    jupyter.wait_idle(timeout=300)


def final_count(page: Any) -> int:
    return page.locator(f"{TRANSCRIBER} .bk-finals tr").count() - 1  # less the header row


def record_live(page: Any, jupyter: JupyterServer, frames: Path) -> list[tuple[Path, float]]:
    """Start the Transcriber, capture its view until both sentences are finals, stop it."""
    open_and_run(page, jupyter, "live.ipynb")
    page.wait_for_selector(TRANSCRIBER, timeout=60_000)
    widget = page.locator(TRANSCRIBER).first
    box = widget.bounding_box()
    assert box is not None
    # One size for every frame (the view grows as finals land): room for the status, the partial
    # and a table of two finals.
    clip = {"x": box["x"], "y": box["y"], "width": box["width"], "height": FRAME_HEIGHT}
    shots: list[tuple[Path, float]] = []

    def shoot() -> None:
        path = frames / f"{len(shots):04d}.png"
        page.screenshot(path=str(path), clip=clip)
        shots.append((path, time.monotonic()))

    shoot()
    page.locator(f"{TRANSCRIBER} .widget-button:has-text('Start')").click()
    deadline = time.monotonic() + 120
    both_at = None
    while time.monotonic() < deadline:
        next_at = time.monotonic() + FRAME_SECONDS
        shoot()
        if both_at is None and final_count(page) >= 2:
            both_at = time.monotonic()
        if both_at is not None and time.monotonic() - both_at > 1.5:  # hold the last view a moment
            break
        time.sleep(max(0.0, next_at - time.monotonic()))
    if both_at is None:
        raise SystemExit("the Transcriber showed fewer than two finals in 120 s: see the frames in " + str(frames))
    widget.screenshot(path=str(DOCS / "transcriber.png"))
    page.locator(f"{TRANSCRIBER} .widget-button:has-text('Stop')").click()
    page.wait_for_function("css => document.querySelector(css).innerText.includes('done')",
                           arg=f"{TRANSCRIBER} .bk-status", timeout=60_000)
    page.wait_for_selector(f"{TRANSCRIBER} .bk-player[data-state='drawn']", timeout=60_000)
    widget.screenshot(path=str(DOCS / "transcriber-playback.png"))
    return shots


def encode(shots: list[tuple[Path, float]], scratch: Path) -> None:
    """The frames as docs/transcriber.webm and docs/transcriber.gif, each held as long as it was shown."""
    listing = scratch / "frames.txt"
    lines = []
    for (path, at), (_, next_at) in zip(shots, [*shots[1:], shots[-1]], strict=True):
        lines += [f"file '{path}'", f"duration {max(next_at - at, 0.05):.3f}"]
    listing.write_text("\n".join([*lines, f"file '{shots[-1][0]}'"]) + "\n")  # the concat demuxer's last frame
    concat = ["ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing)]
    even = "pad=ceil(iw/2)*2:ceil(ih/2)*2:color=white"
    STATIC.mkdir(exist_ok=True)
    subprocess.run([*concat, "-vf", f"{even},fps=10", "-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "40",
                    "-pix_fmt", "yuv420p", "-an", str(STATIC / "transcriber.webm")], check=True)
    subprocess.run([*concat, "-vf", "fps=5,split[a][b];[a]palettegen=max_colors=64[p];[b][p]paletteuse=dither=none",
                    "-loop", "0", str(DOCS / "transcriber.gif")], check=True)


def picture_player(page: Any, jupyter: JupyterServer) -> None:
    open_and_run(page, jupyter, "player.ipynb")
    page.wait_for_selector(f"{PLAYER}[data-state='drawn']", timeout=120_000)
    page.locator(f"{PLAYER} .bk-player-line[data-index='1']").first.click()  # the second line playing
    page.wait_for_selector(f"{PLAYER} .bk-player-line.bk-current[data-index='1']", timeout=30_000)
    page.locator(PLAYER).first.screenshot(path=str(DOCS / "player.png"))


def picture_plot() -> None:
    """``t.plot(audio)`` of the sample, as the tutorials show it (matplotlib: no browser needed)."""
    import matplotlib

    matplotlib.use("Agg")
    with bk.local_server() as server:
        t = bk.Client(server.url).transcribe_sync(bk.sample_path(), speed=None)
    t.plot(bk.sample_path()).figure.savefig(DOCS / "plot.png", dpi=72)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    from playwright.sync_api import sync_playwright

    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed: apt-get install ffmpeg")
    picture_plot()
    with tempfile.TemporaryDirectory(prefix="bk-pictures-") as scratch_name:
        scratch = Path(scratch_name)
        (scratch / "root").mkdir()
        (scratch / "frames").mkdir()
        write_notebook(scratch / "root", "live.ipynb", LIVE_CELLS)
        write_notebook(scratch / "root", "player.ipynb", PLAYER_CELLS)
        jupyter = JupyterServer(scratch / "root", scratch / "home")
        try:
            with sync_playwright() as playwright:
                context = launch(playwright, scratch / "profile", [
                    "--autoplay-policy=no-user-gesture-required",
                    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-audio-capture={bk.sample_path()}",
                ])
                page = context.new_page()
                shots = record_live(page, jupyter, scratch / "frames")
                picture_player(context.new_page(), jupyter)
                context.close()
            encode(shots, scratch)
        finally:
            jupyter.stop()
    for path in (DOCS / "plot.png", DOCS / "transcriber.png", DOCS / "transcriber-playback.png", DOCS / "player.png",
                 DOCS / "transcriber.gif", STATIC / "transcriber.webm"):
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} kB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
