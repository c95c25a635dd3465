"""Secrets never leak; wss:// verifies certificates by default."""

from __future__ import annotations

import json
import logging
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import numpy as np
import pytest

import bk_notebook as bk
from bk_notebook.server import local_server

from conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjdXJpdHktdGVzdA.never-leak-this-one"
TOKENISH = re.compile(r"eyJ[A-Za-z0-9_-]{20,}|token=[A-Za-z0-9_-]{8,}")


def test_no_saved_notebook_holds_anything_token_like() -> None:
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        text = path.read_text()
        assert not TOKENISH.search(text), path.name
        outputs = [o for c in json.loads(text)["cells"] for o in c.get("outputs", [])]
        assert not any(o.get("output_type") == "error" for o in outputs), path.name


async def test_token_absent_from_every_surface(energy_server, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client = bk.Client(energy_server.url, token=TOKEN)
    surfaces = [repr(client), str(vars(client).get("url"))]
    tone = np.concatenate([np.zeros(8000), 0.3 * np.sin(np.arange(8000) / 3), np.zeros(8000)])
    t = await client.transcribe(tone, 16000, speed=None)
    surfaces += [repr(t), t.to_csv(), t.to_jsonl(), t._repr_html_()]
    # Errors raised after the session opened, and their causes.
    async with client.stream() as s:
        s._fail(bk.ConnectionLost("simulated loss"))
        with pytest.raises(bk.ConnectionLost) as info:
            await s.send(np.zeros(3200, dtype=np.int16))
    err = info.value
    surfaces += [str(err), repr(err), repr(err.__cause__), repr(err.transcript)]
    with pytest.raises(bk.ConnectError) as refused:
        await bk.Client("ws://127.0.0.1:9/v1/prod/stream", token=TOKEN, connect_retries=1).transcribe(tone, 16000)
    surfaces += [str(refused.value), repr(refused.value.__cause__), repr(refused.value.__context__)]
    surfaces += [record.getMessage() for record in caplog.records]
    for surface in surfaces:
        assert TOKEN not in surface


def test_token_absent_from_widget_state() -> None:
    pytest.importorskip("anywidget") if not IN_CI else None
    import ipywidgets

    from bk_notebook.widgets import Transcriber

    Transcriber(client=bk.Client("ws://127.0.0.1:9/v1/prod/stream", token=TOKEN))
    state = json.dumps(ipywidgets.Widget.get_manager_state(drop_defaults=False), default=str)
    assert TOKEN not in state


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        if IN_CI:
            pytest.fail("openssl is needed to make a self-signed certificate")
        pytest.skip("openssl not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    return str(cert), str(key)


async def test_wss_verifies_certificates_by_default_and_takes_a_custom_context(certificate) -> None:
    cert, key = certificate
    tone = np.concatenate([np.zeros(8000), 0.3 * np.sin(np.arange(8000) / 3), np.zeros(8000)])
    async with local_server(engine="energy", workers=1, certfile=cert, keyfile=key) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        with pytest.raises(bk.ConnectError, match="TLS verification failed.*pass ssl=") as info:
            await bk.Client(server.url, token=TOKEN).transcribe(tone, 16000)
        assert TOKEN not in str(info.value)
        trusted = ssl.create_default_context(cafile=cert)
        t = await bk.Client(server.url, token=TOKEN, ssl=trusted).transcribe(tone, 16000, speed=None)
        assert t.text == "sound 0.50 s"
