"""The notebooks in notebooks/ are committed executed, and their outputs match a fresh run.

A fresh run executes each notebook top to bottom against the local server (nbclient, a real kernel,
``$BK_TOKEN`` unset) in a scratch copy of notebooks/, cleans it with ``tools/execute_notebooks.py``
(the tool that writes the committed outputs) and compares it with the committed notebook.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from helpers import ROOT, require

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RERUN = "python -m tools.execute_notebooks"

# What each notebook must show (a notebook without an entry is only checked for structure and leaks).
EXPECTED = {
    "01_quickstart": ["speech recognition", "sunny", "00:00:0", "Player(2 finals", "image/png",
                      "word error rate on these synthetic clips", "Selamat pagi"],
    "02_live_microphone": ["Transcriber", "captured so far: 0.0 s"],
    "03_batch_dataset": ["speech recognition", "NaN", "segment", "image/png"],
    "04_protocol_walkthrough": ['"type": "audioConn"', '"sess_id"', '"final"', '"audioStop"', '"status":400',
                                "Connected(session_id=", "Player(2 finals", "image/png"],
    "05_ipywebrtc_recorder": ["4.50 s at 48000 Hz", "speech recognition"],  # sample.webm: the first sentence
    "06_where_did_it_cut": ["speech recognition", "Player(2 finals", "image/png", "], [("],
    "07_transcribe_and_score": ["24 items", "interrupted", "the checkpoint kept", "none twice: True",
                                "normalisation: Normaliser(", "'ref_words': 183", "image/png",
                                "whisper (above)", "pocketsphinx"],
    "08_every_word": ["probability", "image/png", "Player(2 finals", "<00:00:0", "without a vocabulary",
                      "with the prompt", "bk-alignment", "REF:"],
}
# Notebooks whose last cell shows a "Done" button: the fresh run also clicks it, and waits on its state.
PRESS_DONE = {"02_live_microphone", "05_ipywebrtc_recorder"}
PRESS_DONE_CELL = """\
done.click()
for _ in range(2400):  # wait until the button says it is done, at most 120 s
    if done.disabled:
        break
    await asyncio.sleep(0.05)
print('server running:', server.running, '|', done.description)"""


def load_tool() -> Any:
    """tools/ is not an installed package: load the module from its file."""
    spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "tools" / "execute_notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def outputs_text(nb: Any) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(f"{mime}\n{value}" for mime, value in out.get("data", {}).items())
    return "\n".join(parts)


def test_the_notebooks_are_found() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert set(EXPECTED) <= set(names), "a notebook with expected outputs is missing"


# ---------------------------------------------------------------- the committed notebooks (fast: no kernel)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_is_executed_and_clean(path: Path) -> None:
    nbformat = require("nbformat", "reading notebooks")
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code), f"{path.name} is not executed: {RERUN}"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), f"run top to bottom: {RERUN}"
    assert tool.problems(nb) == []
    for needle in EXPECTED.get(path.stem, []):
        assert needle in outputs_text(nb), f"{needle!r} not in the committed outputs of {path.name}: {RERUN}"


@pytest.mark.parametrize("text, problem", [
    ("/work/wt-x/bk_notebook/data/sample.wav", "machine path"),
    ("see /tmp/tmpab12/transcripts.csv", "machine path"),
    ("/home/alice/speech.wav", "machine path"),
    ("C:\\Users\\alice\\x.wav", "machine path"),
    ("<audio src='file:///tmp/x.wav'>", "machine path"),
    ("Bearer abcdefgh12345678", "token-like"),
    ("ws://127.0.0.1:8765/v1/prod/stream?token=s3cret", "token-like"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "token-like"),
    ('{"token": "s3cret"}', "token-like"),
    ("Traceback (most recent call last):\n  File ...", "traceback"),
    ("Client(url='ws://127.0.0.1:41234/v1/prod/stream', token=None)", "loopback port"),
    ('"sess_id": "9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f"', "session id"),
    ("<Microphone object at 0x7f12ab34cd56>", "address"),
])
def test_problems_finds_what_must_not_be_committed(text: str, problem: str) -> None:
    nbformat = require("nbformat", "reading notebooks")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text=text)])])
    assert any(problem in found for found in tool.problems(nb)), tool.problems(nb)


def test_problems_accepts_placeholders_and_the_client_repr() -> None:
    nbformat = require("nbformat", "reading notebooks")
    text = ("Client(url='ws://127.0.0.1:<port>/v1/prod/stream', token=None) Client(url=..., token=<set>) "
            "<bk_notebook>/data/sample.wav <tmp>/x.csv ~/speech.wav a/work/b")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("execute_result", data={"text/plain": text}, execution_count=1)])])
    assert tool.problems(nb) == []


def test_clean_re_encodes_a_picture_whose_base64_looks_like_a_token() -> None:
    nbformat = require("nbformat", "reading notebooks")
    import base64
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for _ in range(200):  # noise pictures until one's base64 spells a JWT's start by chance
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)).save(out, format="PNG")
        encoded = base64.b64encode(out.getvalue()).decode()
        if tool.TOKEN_IN_BASE64.search(encoded):
            break
    else:
        pytest.fail("no noise picture looked token-like")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("plot()", execution_count=1, outputs=[
        nbformat.v4.new_output("display_data", data={"image/png": encoded, "text/plain": "<Figure>"})])])
    assert any("looks token-like" in problem for problem in tool.problems(nb))
    cleaned = tool.clean(nb)
    again = cleaned.cells[0].outputs[0].data["image/png"]
    assert tool.problems(cleaned) == [] and not tool.TOKEN_IN_BASE64.search(again)
    pixels = [np.asarray(Image.open(io.BytesIO(base64.b64decode(x)))) for x in (encoded, again)]
    assert (pixels[0] == pixels[1]).all()  # the same picture, other bytes


def test_clean_replaces_machine_specific_text_and_keeps_what_the_source_says(tmp_path: Path) -> None:
    nbformat = require("nbformat", "reading notebooks")
    import bk_notebook

    package = Path(bk_notebook.__file__).resolve().parent
    session = "0123456789abcdef0123456789abcdef"
    random_a, random_b = "9f" * 16, "a0" * 16
    stdout = (f"{package}/data/sample.wav {tmp_path}/out.csv {Path.home()}/x.wav ws://127.0.0.1:41234/v1 "
              f"ws://127.0.0.1:8765/v1 {random_a} {random_b} {random_a} {session} <M object at 0x7f12ab34cd56> "
              f"{tempfile.gettempdir()}/tmpkcns1e9b/results.jsonl\n")
    cell = nbformat.v4.new_code_cell(f"print(...)  # port 8765, id {session}", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text=stdout[:40]),
        nbformat.v4.new_output("stream", name="stdout", text=stdout[40:]),
        nbformat.v4.new_output("display_data", data={"text/html": f"<b>{random_b}</b>", "image/png": "iVBOR",
                                                     tool.WIDGET_VIEW: {"model_id": random_a}, "text/plain": "W()"}),
        nbformat.v4.new_output("display_data", data={tool.WIDGET_VIEW: {"model_id": random_b}}),
    ])
    cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z"}
    nb = nbformat.v4.new_notebook(cells=[cell], metadata={"widgets": {"state": {}}})
    cleaned = tool.clean(nb, tmp_path).cells[0]
    assert [o.output_type for o in cleaned.outputs] == ["stream", "display_data"]  # merged; bare view dropped
    assert cleaned.outputs[0].text == (
        "<bk_notebook>/data/sample.wav <notebooks>/out.csv ~/x.wav ws://127.0.0.1:<port>/v1 "
        f"ws://127.0.0.1:8765/v1 <session-id-1> <session-id-2> <session-id-1> {session} <M object at <address>> "
        "<tmp>/<scratch>/results.jsonl\n")
    assert cleaned.outputs[1].data == {"text/html": "<b>&lt;session-id-2&gt;</b>", "image/png": "iVBOR",
                                       "text/plain": "W()"}
    assert "execution" not in cleaned.metadata
    assert tool.problems(tool.clean(nb, tmp_path)) == []
    assert tool.problems(nb) != []  # the uncleaned one has widget state, timings and paths


# ------------------------------------------------------------------------ a fresh run (slow: a real kernel)
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_matches_its_committed_outputs(path: Path, tmp_path: Path, monkeypatch) -> None:
    nbformat = require("nbformat", "executing notebooks")
    require("nbclient", "executing notebooks")
    require("ipykernel", "executing notebooks")

    monkeypatch.setenv("BK_TOKEN", "eyJ.not-a-real-token")  # execute() removes it: the local server, always
    monkeypatch.setenv("BK_STT_URL", "ws://127.0.0.1:9/nowhere")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    source = path
    if path.stem in PRESS_DONE:  # run a copy with one more cell that does what the Done button does
        press = nbformat.read(path, as_version=4)
        press.cells.append(nbformat.v4.new_code_cell(PRESS_DONE_CELL))
        source = tmp_path / "pressed" / "notebooks" / path.name
        source.parent.mkdir(parents=True)
        for item in path.parent.iterdir():
            if item.is_file() and item != path:
                (source.parent / item.name).write_bytes(item.read_bytes())
        nbformat.write(press, source)
    # raises CellExecutionError on any error, NotebookRunError if the run left a file in notebooks/
    nb = tool.run_in_scratch_copy(source, scratch, store_widget_state=True)
    saved = json.dumps(nb.metadata.get("widgets", {}))
    assert "token" not in saved.lower()
    if path.stem in PRESS_DONE:
        pressed = nb.cells.pop()
        assert pressed.outputs[0].text == "server running: False | server stopped\n"
    fresh = tool.clean(nb, scratch / "notebooks")
    assert tool.problems(fresh) == []
    text = outputs_text(fresh)
    for needle in EXPECTED.get(path.stem, []):
        assert needle in text, f"{needle!r} not in the outputs of {path.name}"

    committed = nbformat.read(path, as_version=4)
    assert [c.source for c in committed.cells] == [c.source for c in fresh.cells]
    assert len(committed.cells) == len(fresh.cells)
    for i, (old, new) in enumerate(zip(tool.structure(committed), tool.structure(fresh), strict=True)):
        assert old == new, f"{path.name} cell {i}: committed outputs {old[1]}, a fresh run gives {new[1]}: {RERUN}"
