"""Every tutorial and how-to page runs on its own, and shows what its code prints.

Each page's ```python blocks run in order, in one fresh kernel per page, in an empty folder (a page
may not lean on names another page defined). A block that cannot run here says why in a
``<!-- docs-test: not run: REASON -->`` line just above it. An output the page shows is checked:

- ``<!-- docs-test: output -->`` above a fenced block: it is what the python block before it prints;
- ``<!-- docs-test: output of `COMMAND` -->`` above a fenced block: it is what ``COMMAND`` prints
  (run in a subprocess, as the reader would in a shell).

Outputs compare word by word, numbers within ``NUMBER_TOLERANCE`` (times move by a frame or two
between runs and machines; the words may not).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import ROOT, require
from project.test_notebooks import tool

pytestmark = pytest.mark.slow

PAGES = sorted(p for folder in ("tutorial", "howto") for p in (ROOT / "docs" / folder).glob("*.md")
               if p.name != "index.md")
FENCE = re.compile(r"(?:<!-- docs-test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)
NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
NUMBER_TOLERANCE = 0.15


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    marker: str | None  # "not run: why", "output", "output of `command`", or None


def blocks(page: Path) -> list[Block]:
    return [Block(m["lang"], m["body"], m["marker"]) for m in FENCE.finditer(page.read_text())]


def runnable(page: Path) -> bool:
    return any(b.lang == "python" and b.marker is None for b in blocks(page))


def same_output(shown: str, printed: str) -> bool:
    """Word for word, numbers within NUMBER_TOLERANCE."""
    a, b = shown.split(), printed.split()
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if NUMBER.match(x) and NUMBER.match(y):
            if abs(float(x) - float(y)) > NUMBER_TOLERANCE:
                return False
        elif x != y:
            return False
    return True


def printed(cell: object) -> str:
    """What a cell showed: its streams and its result's plain text."""
    texts = []
    for out in cell.outputs:  # type: ignore[attr-defined]
        if out.get("output_type") == "stream":
            texts.append(out["text"])
        elif "data" in out and "text/plain" in out["data"]:
            texts.append(out["data"]["text/plain"])
    return "".join(texts)


def test_every_block_is_run_or_says_why_and_every_output_has_a_source() -> None:
    for page in PAGES:
        previous: Block | None = None
        for block in blocks(page):
            marker = block.marker or ""
            if marker.startswith("not run:"):
                assert len(marker.split()) >= 5, (page.name, marker)  # "not run:" and a reason of 3+ words
            elif marker == "output":
                assert previous is not None and previous.lang == "python" and previous.marker is None, page.name
            elif marker:
                assert re.fullmatch(r"output of `[^`]+`", marker), (page.name, marker)
            previous = block


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_page_runs_alone_in_a_fresh_kernel_and_shows_what_it_prints(page: Path, tmp_path: Path) -> None:
    require("nbclient", "runs the pages' code in a real kernel")
    import nbformat

    page_blocks = blocks(page)
    cells, shown = [], []  # shown: (cell index, the output the page shows)
    for block in page_blocks:
        if block.lang == "python" and block.marker is None:
            cells.append(nbformat.v4.new_code_cell(block.body))
        elif block.marker == "output":
            shown.append((len(cells) - 1, block.body))
    path = tmp_path / f"{page.stem}.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    nb = tool.execute(path, tmp_path, timeout=600)  # raises on the first error, naming the cell
    for index, expected in shown:
        got = printed(nb.cells[index])
        assert same_output(expected, got), f"{page.name}, block {index}: the page shows\n{expected}\nit prints\n{got}"


COMMANDS = [(page, b.marker[len("output of `"):-1], b.body) for page in PAGES for b in blocks(page)
            if b.marker and b.marker.startswith("output of `")]


@pytest.mark.parametrize(("page", "command", "expected"), COMMANDS, ids=[f"{p.stem}:{c}" for p, c, _ in COMMANDS])
def test_a_command_shown_with_its_output_prints_it(page: Path, command: str, expected: str) -> None:
    argv = shlex.split(command)
    assert argv[0] == "bk-notebook", command  # the project's own commands only
    env = {k: v for k, v in os.environ.items() if k not in ("BK_TOKEN", "BK_STT_URL")}
    done = subprocess.run([sys.executable, "-m", "bk_notebook.cli", *argv[1:]], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert same_output(expected, done.stdout), f"{page.name}: the page shows\n{expected}\nit prints\n{done.stdout}"


def test_same_output_tells_a_wrong_word_or_time_from_jitter() -> None:
    shown = "sample.wav  0  0.42  3.23  Hello World, this is a speech recognition test."
    assert same_output(shown, shown.replace("3.23", "3.30"))
    assert not same_output(shown, shown.replace("3.23", "3.60"))
    assert not same_output(shown, shown.replace("speech", "peach"))
    assert not same_output(shown, shown + " again")
