"""The README's Python runs as written: every ```python block, top to bottom, in one fresh kernel.

A block that cannot run here says why in a ``<!-- readme-test: not run: REASON -->`` line above it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import ROOT, require
from project.test_notebooks import tool

pytestmark = pytest.mark.slow

BLOCK = re.compile(r"(?:<!-- readme-test: not run: (?P<reason>[^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.S)


def readme_blocks() -> list[tuple[str, str | None]]:
    return [(m["code"], m["reason"]) for m in BLOCK.finditer((ROOT / "README.md").read_text())]


def test_every_block_that_is_not_run_says_why() -> None:
    blocks = readme_blocks()
    assert blocks
    assert all(reason is None or len(reason.split()) >= 3 for _, reason in blocks)
    run = [code for code, reason in blocks if reason is None]
    assert "bk.local_server()" in run[0]  # the first block starts the embedded server, and it runs


# What a block left behind is what it said it would be: each check runs when the README assigns its name.
# (The README shrinks to docs/_readme_short.md's few lines; these hold for the long one and the short one.)
LEFT_BEHIND = {
    "t": "assert t.complete and t.finals and set(t.finals[0]) >= {'segment', 'text', 'start', 'end'}",
    "chunks": "assert len(chunks) == -(-len(pcm) * 2 // 3200) and all(len(c) == 3200 for c in chunks[:-1])",
    "results": "assert len(results) == 1 and results.loc[0, 'complete'] and results.loc[0, 'text']",
    "scores": "assert list(scores['wer'].index) == [0] and 0 <= scores.attrs['corpus']['wer'] <= 1",
    "transcriber": "assert type(transcriber).__name__ == 'Transcriber'",
}


def test_the_readme_python_runs_top_to_bottom_in_a_fresh_kernel(tmp_path: Path) -> None:
    require("nbclient", "runs the README's code in a real kernel")
    import nbformat

    run = [code for code, reason in readme_blocks() if reason is None]
    assigned = {name for code in run for name in re.findall(r"^(\w+)\s*=", code, re.M)}
    checks = [check for name, check in LEFT_BEHIND.items() if name in assigned]
    assert "t" in assigned  # every README transcribes something
    if any('checkpoint="results.jsonl"' in code for code in run):
        checks.append("assert len(open('results.jsonl').read().splitlines()) == 1")
    cells = [nbformat.v4.new_code_cell(code) for code in run]
    cells.append(nbformat.v4.new_code_cell("\n".join([*checks, f"print('readme ok', {len(checks)})"])))
    path = tmp_path / "readme.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    nb = tool.execute(path, tmp_path, timeout=300)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    last = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert f"readme ok {len(checks)}" in last
