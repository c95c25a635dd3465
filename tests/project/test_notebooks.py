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


# ------------------------------------------------------------------------------ the saved widget state
def _model(name: str, module: str = "@jupyter-widgets/controls", **state: Any) -> dict[str, Any]:
    return {"model_module": module, "model_module_version": "2.0.0", "model_name": name, "state": state}


def _run_with_widgets(models: dict[str, Any], views: list[str], source: str = "show()") -> Any:
    """A notebook as nbclient saves it: one display per view, the manager's state in the metadata."""
    nbformat = require("nbformat", "reading notebooks")
    outputs = [nbformat.v4.new_output("display_data", data={
        tool.WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": view}, "text/plain": f"W({view[:4]})"})
        for view in views]
    cell = nbformat.v4.new_code_cell(source, execution_count=1, outputs=outputs)
    return nbformat.v4.new_notebook(cells=[cell], metadata={"widgets": {tool.WIDGET_STATE: {
        "version_major": 2, "version_minor": 0, "state": models}}})


RANDOM_IDS = {name: f"{i:x}" * 32  # a run's model ids: random hex
              for i, name in enumerate(("box", "bar", "html", "player", "layout", "lone", "idle"), 1)}


def _live_display_run() -> Any:
    """Notebook 01's live display, in small: a box of a progress bar, an HTML table and a player (an anywidget)."""
    ref = {name: "IPY_MODEL_" + model_id for name, model_id in RANDOM_IDS.items()}
    models = {
        RANDOM_IDS["box"]: _model("VBoxModel", children=[ref["bar"], ref["player"], ref["html"]], layout=ref["layout"]),
        RANDOM_IDS["bar"]: _model("FloatProgressModel", value=8.4, max=8.4, description="sent", layout=ref["layout"]),
        RANDOM_IDS["html"]: _model("HTMLModel", value="<td>ws://127.0.0.1:41234/v1</td>", layout=ref["layout"]),
        RANDOM_IDS["player"]: _model("AnyModel", "anywidget", _esm="export default {}", duration=8.4),
        RANDOM_IDS["layout"]: _model("LayoutModel", "@jupyter-widgets/base"),
        RANDOM_IDS["lone"]: _model("AnyModel", "anywidget", _esm="export default {}"),
        RANDOM_IDS["idle"]: _model("LabelModel", value="a widget no output shows"),
    }
    return _run_with_widgets(models, [RANDOM_IDS["box"], RANDOM_IDS["lone"]])


def test_clean_keeps_the_state_of_views_the_site_can_draw_and_leaves_custom_views_as_text() -> None:
    cleaned = tool.clean(_live_display_run())
    box_output, lone_output = cleaned.cells[0].outputs
    assert box_output.data[tool.WIDGET_VIEW]["model_id"] == "bk-widget-1"
    assert lone_output.data == {"text/plain": f"W({RANDOM_IDS['lone'][:4]})"}  # the anywidget: its text alone
    state = tool.saved_widget_state(cleaned)
    # The box, its bar, its table and the layout they share; not the player, the lone anywidget, the idle label.
    assert sorted(model["model_name"] for model in state.values()) == [
        "FloatProgressModel", "HTMLModel", "LayoutModel", "VBoxModel"]
    box = state["bk-widget-1"]["state"]
    assert [state[child.removeprefix("IPY_MODEL_")]["model_name"] for child in box["children"]] == [
        "FloatProgressModel", "HTMLModel"]  # the player left out, the order kept
    assert set(state) == {f"bk-widget-{n}" for n in range(1, 5)}  # stable ids, a fresh run gives the same
    html_model = next(model for model in state.values() if model["model_name"] == "HTMLModel")
    assert html_model["state"]["value"] == "<td>ws://127.0.0.1:&lt;port&gt;/v1</td>"  # scrubbed, escaped in HTML
    assert tool.problems(cleaned) == []
    again = tool.clean(_live_display_run())
    assert (again.metadata, again.cells[0].outputs) == (cleaned.metadata, cleaned.cells[0].outputs)


def test_clean_saves_no_widget_state_when_no_view_can_be_drawn() -> None:
    run = _live_display_run()
    run.cells[0].outputs = run.cells[0].outputs[1:]  # only the lone anywidget's view
    cleaned = tool.clean(run)
    assert "widgets" not in cleaned.metadata
    assert tool.problems(cleaned) == []


@pytest.mark.parametrize("plant, problem", [
    (lambda m: m["bk-widget-3"]["state"].update(value="token=s3cret"), "token-like"),
    (lambda m: m["bk-widget-3"]["state"].update(value="Bearer abcdefgh12345678"), "token-like"),
    (lambda m: m["bk-widget-3"]["state"].update(value="/home/alice/speech.wav"), "machine path"),
    # Inside a string: JSON's escaping of the whole state would hide the quotes and double the backslashes.
    (lambda m: m["bk-widget-3"]["state"].update(value='config {"token": "s3cret"}'), "token-like"),
    (lambda m: m["bk-widget-3"]["state"].update(value="C:\\Users\\alice\\speech.wav"), "machine path"),
    (lambda m: m["bk-widget-3"].update(buffers=[{"path": ["value"], "data": "AAAA"}]), "binary buffers"),
    (lambda m: m["bk-widget-3"]["state"].update(value="ws://127.0.0.1:41234/"), "loopback port"),
    (lambda m: m.update({"bk-widget-9": _model("AnyModel", "anywidget")}), "cannot draw"),
    (lambda m: m["bk-widget-1"]["state"]["children"].append("IPY_MODEL_bk-widget-9"), "not saved"),
    (lambda m: m.update({"9f" * 16: m.pop("bk-widget-2")}), "model id"),
    (lambda m: m.clear(), "not a saved widget state"),
])
def test_problems_finds_what_the_saved_widget_state_must_not_hold(plant: Any, problem: str) -> None:
    cleaned = tool.clean(_live_display_run())
    plant(tool.saved_widget_state(cleaned))
    assert any(problem in found for found in tool.problems(cleaned)), tool.problems(cleaned)


def test_problems_finds_a_widget_view_whose_state_is_not_saved() -> None:
    cleaned = tool.clean(_live_display_run())
    del cleaned.metadata["widgets"]
    assert any("state is not saved" in found for found in tool.problems(cleaned))


def test_notebook_01_saves_its_live_display_for_the_site() -> None:
    nbformat = require("nbformat", "reading notebooks")
    nb = nbformat.read(ROOT / "notebooks" / "01_quickstart.ipynb", as_version=4)
    state = tool.saved_widget_state(nb)
    views = [out.data[tool.WIDGET_VIEW]["model_id"] for cell in nb.cells for out in cell.get("outputs", [])
             if tool.WIDGET_VIEW in out.get("data", {})]
    assert views and all(view in state for view in views), f"{views} {sorted(state)}: {RERUN}"
    names = {model["model_name"] for model in state.values()}
    assert {"VBoxModel", "FloatProgressModel", "HTMLModel"} <= names, names
    assert "Hello world" in json.dumps(state)  # the finals table, as the run left it


def test_the_site_ships_the_widget_manager_the_tool_copied() -> None:
    """docs/_static/widgets/ is what ``python -m tools.widget_js`` wrote: no file edited, added or lost."""
    spec = importlib.util.spec_from_file_location("widget_js", ROOT / "tools" / "widget_js.py")
    assert spec is not None and spec.loader is not None
    widget_js = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(widget_js)
    folder = widget_js.TARGET
    assert (folder / widget_js.MANIFEST).read_text().splitlines() == widget_js.manifest_lines(folder)
    assert (folder / "embed.js").stat().st_size > 1_000_000  # the bundle, not a stub
    assert 'nb_ipywidgets_js = {"widgets/embed.js": {}}' in (ROOT / "docs" / "conf.py").read_text()


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
