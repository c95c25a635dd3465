"""The README's Python runs as written: every ```python block, top to bottom, in one fresh kernel.

A block that cannot run here says why in a ``<!-- readme-test: not run: REASON -->`` line above it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import require
from test_notebooks import tool

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?:<!-- readme-test: not run: (?P<reason>[^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.S)


def readme_blocks() -> list[tuple[str, str | None]]:
    return [(m["code"], m["reason"]) for m in BLOCK.finditer((ROOT / "README.md").read_text())]


def test_every_block_that_is_not_run_says_why() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 5
    assert all(reason is None or len(reason.split()) >= 3 for _, reason in blocks)
    run = [code for code, reason in blocks if reason is None]
    assert "bk.local_server()" in run[0]  # the API tour is the first block, and it runs


def test_the_readme_python_runs_top_to_bottom_in_a_fresh_kernel(tmp_path: Path) -> None:
    require("nbclient", "runs the README's code in a real kernel")
    import nbformat

    cells = [nbformat.v4.new_code_cell(code) for code, reason in readme_blocks() if reason is None]
    cells.append(nbformat.v4.new_code_cell(  # what the blocks left behind is what they said it would be
        "assert t.complete and t.finals and set(t.finals[0]) >= {'segment', 'text', 'start', 'end'}\n"
        "assert len(chunks) == -(-len(pcm) * 2 // 3200) and all(len(c) == 3200 for c in chunks[:-1])\n"
        "assert len(results) == 1 and results.loc[0, 'complete'] and results.loc[0, 'text']\n"
        "assert list(scores['wer'].index) == [0] and 0 <= scores.attrs['corpus']['wer'] <= 1\n"
        "print('readme ok', type(transcriber).__name__, len(open('results.jsonl').read().splitlines()))"))
    path = tmp_path / "readme.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    nb = tool.execute(path, tmp_path, timeout=300)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    last = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "readme ok Transcriber 1" in last
