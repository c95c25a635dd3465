"""The public surface: __all__ complete and sorted; importing stays light."""

from __future__ import annotations

import subprocess
import sys

import bk_notebook as bk


def test_all_is_complete_and_sorted() -> None:
    public = {name for name in vars(bk) if not name.startswith("_")}
    modules = {"audio", "auth", "batch", "client", "errors", "protocol", "redact", "transcript", "server",
               "widgets", "cli", "display", "annotations", "stream", "resume", "handshake", "window", "blocking",
               "speed", "events", "safeguards", "soundcard", "live", "devices", "plot", "checkpoint", "datasets",
               "scoring", "dask", "capture", "settings", "outputs"}
    assert public - modules <= set(bk.__all__)
    assert bk.__all__ == sorted(bk.__all__)
    assert all(hasattr(bk, name) for name in bk.__all__)


def test_import_does_not_load_heavy_backends() -> None:
    heavy = ("librosa", "pocketsphinx", "pandas", "ipywidgets", "websockets", "urllib.request", "sounddevice",
             "jiwer", "dask", "distributed", "datasets")
    code = f"import sys, bk_notebook; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


LAZY_CHECK = """
import sys, bk_notebook as bk
deferred = ("bk_notebook.server", "bk_notebook.batch", "bk_notebook.audio.soundcard")
print([m for m in deferred if m in sys.modules])
from bk_notebook.audio.soundcard import SoundCard
from bk_notebook.batch.run import transcribe_many
from bk_notebook.batch.scoring import evaluate
from bk_notebook.server.local import LocalServer, local_server
print(bk.SoundCard is SoundCard, bk.transcribe_many is transcribe_many, bk.evaluate is evaluate,
      bk.LocalServer is LocalServer, bk.local_server is local_server)
print(bk.server.__name__, bk.widgets.__name__, sorted({"SoundCard", "local_server", "server"} - set(dir(bk))),
      "local_server" in vars(bk))  # once loaded, an ordinary attribute: no import machinery per access
try:
    bk.no_such_name
except AttributeError as exc:
    print(exc)
"""


def test_the_server_batch_and_devices_load_on_first_use() -> None:
    out = subprocess.run([sys.executable, "-c", LAZY_CHECK], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "[]",
        "True True True True True",
        "bk_notebook.server bk_notebook.widgets [] True",
        "module 'bk_notebook' has no attribute 'no_such_name'",
    ]


def test_error_tree() -> None:
    assert issubclass(bk.AudioError, bk.BkError) and issubclass(bk.AudioError, ValueError)
    assert issubclass(bk.AuthError, bk.ConnectError)
    assert issubclass(bk.WorkerUnavailable, bk.ServiceError)
    assert issubclass(bk.StreamTimeout, TimeoutError)
    for name in bk.__all__:
        obj = getattr(bk, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, bk.BkError), name
