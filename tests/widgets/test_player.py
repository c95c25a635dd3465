"""The player widget without a browser (faked comm), its bundle, the static plot, the saved notebook."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bk_notebook as bk

from helpers import FIXTURES, ROOT, require

require("anywidget", "the player widget")
from bk_notebook.widgets import Transcriber  # noqa: E402
from bk_notebook.widgets.player import WAV_LIMIT_BYTES, Player, encode_audio, peaks  # noqa: E402

TOKEN = "eyJhbGciOiJIUzI1NiJ9.player-notebook.NEVER-SAVED"
FINALS = [{"segment": 0, "text": "one", "start": 0.5, "end": 1.5, "session_id": "s"},
          {"segment": 1, "text": "two <b>", "start": 2.0, "end": 3.25, "session_id": "s"},
          {"segment": 2, "text": "three", "start": 3.5, "end": 3.9, "session_id": "s"}]


def transcript(finals: list[dict[str, Any]] = FINALS) -> bk.Transcript:
    return bk.Transcript(finals=[dict(r) for r in finals], duration=4.0)


def tone(seconds: float, sr: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def browser_asks(widget: Any, content: dict[str, Any]) -> None:
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def capture_sends(widget: Any) -> list[tuple[dict[str, Any], list[Any]]]:
    sent: list[tuple[dict[str, Any], list[Any]]] = []
    widget.send = lambda content, buffers=None: sent.append((content, list(buffers or [])))
    return sent


# ------------------------------------------------------------------ the bundle
def test_committed_bundle_was_built_from_the_committed_sources() -> None:
    bundle = (ROOT / "bk_notebook" / "widgets" / "player.js").read_text()
    recorded = re.search(r"^// inputs-sha256: ([0-9a-f]{64})$", bundle, re.M)
    assert recorded, "player.js has no inputs hash: rebuild with `npm ci && npm run build` in js/"
    digest = hashlib.sha256()
    for name in ("src/player.js", "package-lock.json"):
        digest.update((ROOT / "js" / name).read_bytes())
    assert recorded.group(1) == digest.hexdigest(), "player.js is stale: run `npm ci && npm run build` in js/"


def test_wavesurfer_and_esbuild_are_pinned_exactly() -> None:
    package = json.loads((ROOT / "js" / "package.json").read_text())
    lock = json.loads((ROOT / "js" / "package-lock.json").read_text())
    for group in ("dependencies", "devDependencies"):
        for name, version in package[group].items():
            assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version} is not an exact pin"
            assert lock["packages"][f"node_modules/{name}"]["version"] == version
    bundle = (ROOT / "bk_notebook" / "widgets" / "player.js").read_text()
    assert f"wavesurfer.js {package['dependencies']['wavesurfer.js']}" in bundle.splitlines()[1]
    assert "import " not in bundle.split("\n", 3)[3][:200]  # one self-contained module: nothing left to import


# ------------------------------------------------------------------- peaks and encoding
def test_peaks_are_the_loudest_sample_of_each_stretch() -> None:
    pcm = np.zeros(16000 * 10, np.int16)
    pcm[16000 * 7] = -32768  # a click at 7 s
    pcm[16000 * 2: 16000 * 3] = 3277  # -20 dB for a second
    env = np.frombuffer(peaks(pcm, count=100), np.uint8)
    assert env.size == 100
    assert env[70] == 255 and np.count_nonzero(env == 255) == 1
    assert set(env[20:30]) == {26} and env[19] == 0 and env[30] == 0
    assert np.frombuffer(peaks(pcm[:50], count=8000), np.uint8).size == 50  # never more peaks than samples
    assert peaks(np.zeros(0, np.int16)) == b""


@pytest.mark.parametrize("seconds", [0.05, 10.0, 31.0, 32.0, 90.0])
def test_auto_format_is_wav_when_small_and_lossless_flac_when_large(seconds: float) -> None:
    import soundfile as sf

    pcm = bk.to_pcm16(tone(seconds), 16000)
    data, mime = encode_audio(pcm)
    assert mime == ("audio/wav" if pcm.nbytes <= WAV_LIMIT_BYTES else "audio/flac")
    decoded, sr = sf.read(io.BytesIO(data), dtype="int16")
    assert sr == 16000 and np.array_equal(decoded, pcm)
    if mime == "audio/flac":
        assert len(data) < pcm.nbytes / 1.5


@pytest.mark.parametrize("seconds", [0.5, 61.3])
def test_opus_is_a_tenth_of_wav_and_as_long(seconds: float) -> None:
    av = require("av", "Opus encoding")
    speech = bk.to_pcm16(FIXTURES / "hello.wav")
    pcm = np.tile(speech, int(seconds * 16000) // speech.size + 1)[: int(seconds * 16000)]
    data, mime = encode_audio(pcm, "opus")
    assert mime == "audio/ogg" and data[:4] == b"OggS"
    with av.open(io.BytesIO(data)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
        rate = container.streams.audio[0].rate
    assert abs(samples / rate - seconds) < 0.03  # the same length: regions land where they should
    if seconds > 10:
        assert len(data) < pcm.nbytes / 6


def test_flac_is_lossless_and_smaller() -> None:
    import soundfile as sf

    pcm = bk.to_pcm16(FIXTURES / "hello.wav")
    data, mime = encode_audio(pcm, "flac")
    decoded, sr = sf.read(io.BytesIO(data), dtype="int16")
    assert mime == "audio/flac" and sr == 16000 and np.array_equal(decoded, pcm) and len(data) < pcm.nbytes


def test_bad_format_and_bad_audio_are_refused_before_anything_is_shown() -> None:
    with pytest.raises(bk.UsageError, match="audio_format"):
        Player(FINALS, tone(1.0), sr=16000, audio_format="mp3")
    with pytest.raises(bk.AudioError):
        Player(FINALS, np.zeros(0), sr=16000)
    with pytest.raises(bk.AudioError, match="sample rate"):
        transcript().player(tone(1.0))


# ----------------------------------------------------------------------- the widget
def test_player_state_holds_finals_and_peaks_but_no_audio() -> None:
    audio = tone(4.0, sr=44100)
    p = transcript().player(audio, sr=44100)
    assert isinstance(p, Player)
    assert [(f["text"], f["start"], f["end"]) for f in p.finals] == [(r["text"], r["start"], r["end"]) for r in FINALS]
    assert p.duration == pytest.approx(4.0, abs=1e-3)
    state = p.get_state()
    assert state["_embedded"] == b""
    assert len(state["_peaks"]) == 8000
    audio_size = len(p.encoded[0])
    assert audio_size > 100_000
    data = {k: v for k, v in state.items() if k not in ("_esm", "_css")}  # the front end's code, the same for all
    size = sum(len(v) if isinstance(v, (bytes, memoryview, str)) else len(json.dumps(v)) for v in data.values())
    assert size < audio_size / 10


def test_audio_goes_as_one_binary_buffer_when_a_front_end_asks() -> None:
    p = transcript().player(FIXTURES / "hello.wav")
    sent = capture_sends(p)
    assert sent == [] and p.bytes_sent == 0  # nothing until a view asks
    browser_asks(p, {"type": "request_audio"})
    browser_asks(p, {"type": "request_audio"})  # a second front end (e.g. another browser tab)
    assert len(sent) == 2
    content, buffers = sent[0]
    assert content == {"type": "audio", "mime": "audio/wav"} and len(buffers) == 1
    assert bytes(buffers[0]) == p.encoded[0] and bytes(buffers[0][:4]) == b"RIFF"
    assert p.bytes_sent == 2 * len(p.encoded[0])
    browser_asks(p, {"type": "something else"})
    assert len(sent) == 2


def test_embed_audio_puts_the_encoded_audio_in_the_state() -> None:
    p = Player(transcript(), tone(2.0), sr=16000, embed_audio=True, audio_format="flac")
    assert p.mime == "audio/flac" and p.get_state()["_embedded"] == p.encoded[0]


def test_finals_from_records_and_empty_transcripts() -> None:
    p = Player([{"text": "x", "start": 0, "end": 1}], tone(1.0), sr=16000)
    assert p.finals == [{"segment": 0, "text": "x", "start": 0.0, "end": 1.0}]
    assert Player(bk.Transcript(), tone(1.0), sr=16000).finals == []


async def test_transcriber_shows_the_runs_player_after_stop(energy_server) -> None:
    from widgets.test_widgets import press_stop, speak

    t = Transcriber(client=bk.Client(energy_server.url))
    assert t.playback.children == ()
    t.start()
    await speak(t, 1.0)
    await press_stop(t)
    (player,) = t.playback.children
    assert isinstance(player, Player)
    assert [f["text"] for f in player.finals] == [f["text"] for f in t.finals] and player.finals
    assert player.duration == pytest.approx(len(t.source.recording) / 16000)
    t.start()
    await speak(t, 0.5)  # a second run replaces the player with its own
    await press_stop(t)
    (second,) = t.playback.children
    assert second is not player and [f["text"] for f in second.finals] == [f["text"] for f in t.finals if f["run"] == 1]


async def test_an_uploaded_file_run_gets_its_player(energy_server) -> None:
    import datetime

    import ipywidgets

    upload = ipywidgets.FileUpload(accept="audio/*")
    t = Transcriber(client=bk.Client(energy_server.url), source=upload)
    data = (FIXTURES / "hello.wav").read_bytes()
    upload.value = ({"name": "hello.wav", "type": "audio/wav", "size": len(data), "content": memoryview(data),
                     "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    await asyncio.sleep(0)
    while t._run.task is None:
        await asyncio.sleep(0)
    await asyncio.wait_for(t._run.task, 10)
    (player,) = t.playback.children
    assert player.duration == pytest.approx(len(bk.to_pcm16(data)) / 16000)
    assert len(player.finals) == len(t.finals) > 0


# ------------------------------------------------------------------------ the plot
@pytest.fixture
def plt() -> Any:
    matplotlib = require("matplotlib", "the static plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def spans(ax: Any) -> list[Any]:
    from bk_notebook.plot import SPAN_GID

    return [p for p in ax.patches if p.get_gid() == SPAN_GID]


def span_extent(patch: Any) -> tuple[float, float]:
    xs = patch.get_path().transformed(patch.get_patch_transform()).vertices[:, 0] if hasattr(
        patch, "get_patch_transform") else patch.get_xy()[:, 0]
    return float(np.min(xs)), float(np.max(xs))


@pytest.mark.parametrize("count", [0, 1, 3, 40])
def test_plot_draws_one_span_per_final_on_waveform_and_spectrogram(plt: Any, count: int) -> None:
    finals = [{"text": f"word {i}", "start": 0.25 * i, "end": 0.25 * i + 0.2} for i in range(count)]
    ax = transcript(finals).plot(tone(max(10.0, 0.25 * count)), sr=16000)
    fig = ax.figure
    assert tuple(fig.get_size_inches()) == (12, 5)
    wave_ax, spec_ax = fig.axes[0], ax
    assert len([a for a in fig.axes if a.get_label() != "<colorbar>"]) == 2
    for axes in (wave_ax, spec_ax):
        drawn = spans(axes)
        assert len(drawn) == count
        # Flat lists: pytest 9's approx refuses nested sequences.
        assert [x for s in drawn for x in span_extent(s)] == pytest.approx(
            [x for f in finals for x in (f["start"], f["end"])])
    labels = [t.get_text() for t in wave_ax.texts]
    assert labels == [f["text"] for f in finals]
    assert spec_ax.get_xlim() == pytest.approx((0, max(10.0, 0.25 * count)))
    fig.canvas.draw()
    width, height = fig.canvas.get_width_height()
    assert (width, height) == (int(12 * fig.dpi), int(5 * fig.dpi))


def test_plot_into_given_axes(plt: Any) -> None:
    fig, ax = plt.subplots(figsize=(6, 3))
    assert transcript().plot(tone(4.0), sr=16000, ax=ax) is ax
    assert len(fig.axes) == 1 and len(spans(ax)) == 3
    assert [t.get_text() for t in ax.texts] == ["one", "two <b>", "three"]  # labels go on the only axes
    fig, pair = plt.subplots(2, 1)
    assert transcript().plot(tone(4.0), sr=16000, ax=pair) is pair[1]
    assert len(spans(pair[0])) == len(spans(pair[1])) == 3
    with pytest.raises(bk.UsageError, match="pair"):
        transcript().plot(tone(4.0), sr=16000, ax=list(plt.subplots(3, 1)[1]))


def test_long_labels_are_shortened(plt: Any) -> None:
    text = "a very long final " * 10
    ax = transcript([{"text": text, "start": 0.0, "end": 3.0}]).plot(tone(4.0), sr=16000)
    (label,) = ax.figure.axes[0].texts
    assert len(label.get_text()) == 40 and label.get_text().endswith("…")


def test_plot_without_librosa_names_the_extra(plt: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "librosa.display", None)
    with pytest.raises(bk.MissingDependency, match=r"bk-notebook\[plot\]"):
        transcript().plot(tone(1.0), sr=16000)


# ------------------------------------------------------------------ the saved notebook
@pytest.mark.slow
@pytest.mark.parametrize("embed", [False, True], ids=["default", "embed_audio"])
def test_a_saved_notebook_with_a_player_stays_small_and_holds_no_token(tmp_path: Path, embed: bool,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = require("nbformat", "executing notebooks")
    require("nbclient", "executing notebooks")
    from nbclient import NotebookClient

    monkeypatch.setenv("BK_TOKEN", TOKEN)  # the kernel inherits it; the server accepts only it
    minute = np.tile(bk.to_pcm16(FIXTURES / "hello.wav"), 40)[: 16000 * 90]  # 90 s of speech
    np.save(tmp_path / "speech.npy", minute)
    source = (
        "import os\nimport numpy as np\nimport bk_notebook as bk\nfrom bk_notebook.widgets import Transcriber\n"
        "server = bk.local_server(engine='energy', tokens=(os.environ['BK_TOKEN'],))\n"
        "client = bk.Client(server.url)  # the token from $BK_TOKEN, as users do\n"
        "audio = np.load('speech.npy')\n"
        "t = await client.transcribe(audio, sr=16000, speed=None)\n"
        "transcriber = Transcriber(client)\ntranscriber"
    )
    show = f"from bk_notebook.widgets.player import Player\np = Player(t, audio, sr=16000, embed_audio={embed})\np"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source), nbformat.v4.new_code_cell(show)])
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                            store_widget_state=True)
    client.execute()
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    saved = path.read_text()
    assert TOKEN not in saved and TOKEN[:20] not in saved
    assert "Player(" in saved  # the player was shown and its state saved
    size = path.stat().st_size
    compressed = 90 * 3000  # the audio as Opus is ~3 kB/s: far above the notebook's size unless embedded
    if embed:
        assert size > compressed
    else:
        assert size < 150_000


# ------------------------------------------------------------------------------ words
WORDS_FINALS = [
    {"segment": 0, "text": "one two", "start": 0.5, "end": 1.5, "session_id": "s",
     "words": [{"word": "one", "start": 0.5, "end": 0.9, "probability": 0.9},
               {"word": "two", "start": 1.0, "end": 1.5, "probability": 0.2}]},
    {"segment": 1, "text": "three", "start": 2.0, "end": 3.0, "session_id": "s"},
]


def test_the_player_carries_each_finals_words_and_shades_below_a_threshold() -> None:
    p = Player(WORDS_FINALS, tone(3.0), sr=16000)
    assert p.finals[0]["words"] == WORDS_FINALS[0]["words"] and "words" not in p.finals[1]
    assert p.low_probability == 0.5  # "auto": the words carry probabilities
    assert Player(WORDS_FINALS, tone(3.0), sr=16000, low_probability=0.95).low_probability == 0.95
    assert Player(WORDS_FINALS, tone(3.0), sr=16000, low_probability=None).low_probability == 0.0
    unsure = [dict(WORDS_FINALS[0], words=[dict(w, probability=None) for w in WORDS_FINALS[0]["words"]])]
    assert Player(unsure, tone(3.0), sr=16000).low_probability == 0.0  # no probabilities: off by default
    assert Player(FINALS, tone(4.0), sr=16000).low_probability == 0.0
    for bad in (1.5, -0.1, "high", True):
        with pytest.raises(bk.UsageError, match="low_probability"):
            Player(WORDS_FINALS, tone(3.0), sr=16000, low_probability=bad)  # type: ignore[arg-type]

