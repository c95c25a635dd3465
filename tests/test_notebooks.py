"""Every notebook in notebooks/ runs top to bottom against the local server (nbclient, a real kernel)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import require

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
pytestmark = pytest.mark.slow


def test_there_are_notebooks() -> None:
    assert [p.stem for p in NOTEBOOKS] == [
        "01_quickstart", "02_live_microphone", "03_batch_dataset", "04_protocol_walkthrough", "05_ipywebrtc_recorder",
        "06_where_did_it_cut", "07_transcribe_and_score"]


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(f"{mime}\n{value}" for mime, value in out.get("data", {}).items())
    return "\n".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path, monkeypatch) -> None:
    nbformat = require("nbformat", "executing notebooks")
    require("nbclient", "executing notebooks")
    require("ipykernel", "executing notebooks")
    from nbclient import NotebookClient

    monkeypatch.delenv("BK_TOKEN", raising=False)  # the local server, never the hosted service
    for item in path.parent.iterdir():
        if item.is_file():
            shutil.copy(item, tmp_path)
    nb = nbformat.read(tmp_path / path.name, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                            store_widget_state=True)
    client.execute()  # raises CellExecutionError on any error
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    text = outputs_text(nb)
    expected = {
        "01_quickstart": ["hello world", "weather", "00:00:00,", "Player(2 finals", "image/png"],
        "02_live_microphone": ["Transcriber", "captured so far: 0.0 s"],
        "03_batch_dataset": ["hello world", "NaN", "segment", "image/png"],
        "04_protocol_walkthrough": ['"type": "audioConn"', '"sess_id"', '"final"', '"audioStop"', '"status":400',
                                    "Connected(session_id=", "Player(2 finals", "image/png"],
        "05_ipywebrtc_recorder": ["4.4", "hello"],
        "06_where_did_it_cut": ["hello world", "Player(2 finals", "image/png", "], [("],
        "07_transcribe_and_score": ["24 items", "interrupted", "the checkpoint kept", "none twice: True",
                                    "normalisation: Normaliser(", "'ref_words': 183", "image/png"],
    }[path.stem]
    for needle in expected:
        assert needle in text, f"{needle!r} not in the outputs of {path.name}"
    saved = json.dumps(nb.metadata.get("widgets", {}))
    assert "token" not in saved.lower()
