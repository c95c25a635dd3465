"""Secrets never leak; wss:// verifies certificates by default."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import shutil
import signal
import ssl
import subprocess
import sys

import numpy as np
import pytest

import bk_notebook as bk
from bk_notebook.server import local_server

from helpers import IN_CI, ROOT, require

TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjdXJpdHktdGVzdA.never-leak-this-one"
TOKENISH = re.compile(r"eyJ[A-Za-z0-9_-]{20,}|token=[A-Za-z0-9_-]{8,}")


def test_no_saved_notebook_holds_anything_token_like() -> None:
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        saved_state = json.dumps(notebook["metadata"].get("widgets", {}))  # the widget state the site draws
        assert not TOKENISH.search(saved_state) and "token=" not in saved_state.lower(), path.name
        outputs = [o for c in notebook["cells"] for o in c.get("outputs", [])]
        # Pictures included: a scanner cannot tell a plot's base64 spelling "eyJ..." from a token, so the
        # notebook tool re-encodes such a picture (same pixels) before it is committed.
        assert not TOKENISH.search(json.dumps(notebook, indent=1)), path.name
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


def test_token_absent_from_the_widget_state_a_notebook_saves() -> None:
    """What tools/execute_notebooks.py commits of a token client's widgets: the same rule, and its check."""
    pytest.importorskip("anywidget") if not IN_CI else None
    nbformat = require("nbformat", "reading notebooks")
    import ipywidgets

    from bk_notebook.widgets import Transcriber

    from project.test_notebooks import tool

    client = bk.Client("ws://127.0.0.1:9/v1/prod/stream", token=TOKEN)
    transcriber = Transcriber(client=client)
    status = ipywidgets.Label(value=repr(client))  # a view of the client, as a reader might make one
    views = [nbformat.v4.new_output("display_data", data={
        tool.WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": widget.model_id},
        "text/plain": repr(widget)}) for widget in (transcriber, status)]
    run = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("transcriber", execution_count=1, outputs=views)],
        metadata={"widgets": {tool.WIDGET_STATE: {"version_major": 2, "version_minor": 0,
                                                  "state": ipywidgets.Widget.get_manager_state()["state"]}}})
    status.close()  # a live widget stays in the process's state: other tests read all of it
    transcriber.close()
    saved = tool.clean(run)
    assert tool.saved_widget_state(saved)  # the label is saved: the check below reads a real state
    assert tool.problems(saved) == []
    assert TOKEN not in json.dumps(saved) and not TOKENISH.search(json.dumps(saved))
    with_token = tool.clean(run)
    next(m for m in tool.saved_widget_state(with_token).values() if m["model_name"] == "LabelModel")[
        "state"]["value"] = f"token={TOKEN}"  # were a token in the state, the tool would refuse to write it
    assert any("token-like" in problem for problem in tool.problems(with_token))


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


# ------------------------------------------------------------------ origin policy
def tone_pcm16(seconds: float = 0.3) -> np.ndarray:
    return np.concatenate([np.zeros(8000), 0.3 * np.sin(np.arange(int(16000 * seconds)) / 3), np.zeros(8000)])


async def handshake_status(url: str, **headers: str) -> int:
    """HTTP status of a websocket handshake sent with ``headers`` (101 when it opened)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    try:
        async with connect(url, additional_headers=headers, origin=None):
            return 101
    except InvalidStatus as exc:
        return int(exc.response.status_code)


async def test_origin_refused_allowed_and_absent() -> None:
    allowed = ("http://localhost:8888", "HTTPS://Lab.Example.org/")
    async with local_server(engine="energy", workers=2, allow_origins=allowed) as server:
        assert await handshake_status(server.url, Origin="https://evil.example") == 403
        assert await handshake_status(server.url, Origin="null") == 403  # file:// pages, sandboxed frames
        assert await handshake_status(server.url, Origin="http://localhost:8889") == 403
        assert await handshake_status(server.url, Origin="http://localhost:8888") == 101
        assert await handshake_status(server.url, Origin="https://lab.example.org") == 101
        # One origin however it is spelt: scheme and host in any case, with or without the trailing slash.
        assert await handshake_status(server.url, Origin="HTTP://Localhost:8888/") == 101
        assert await handshake_status(server.url, Origin="https://LAB.example.org/") == 101
        assert await handshake_status(server.url) == 101  # no Origin: Python clients, the CLI
        t = await bk.Client(server.url).transcribe(tone_pcm16(), 16000, speed=None)
        assert t.text == "sound 0.30 s"
    async with local_server(engine="energy", workers=1) as server:  # the default: no browser origin at all
        assert await handshake_status(server.url, Origin="http://localhost:8888") == 403
        assert await handshake_status(server.url) == 101


async def test_origin_is_checked_before_the_token() -> None:
    async with local_server(engine="energy", workers=1, tokens=("tok-1",)) as server:
        assert await handshake_status(server.url + "?token=tok-1", Origin="https://evil.example") == 403
        assert await handshake_status(server.url + "?token=tok-1") == 101


def raw_handshake_status(port: int, host: str, origin: str) -> int:
    """Status of a handshake sent by hand, so that the Host header can name anything (DNS rebinding)."""
    import socket

    request = (f"GET /v1/prod/stream HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode())
        return int(sock.recv(1024).split(b" ", 2)[1])


def websocket_client_status(url: str) -> int:
    """Open a socket with websocket-client as a user would (its default Origin is the server's own address)."""
    import websocket  # websocket-client

    try:
        ws = websocket.create_connection(url, timeout=5)
    except websocket.WebSocketBadStatusException as exc:
        return int(exc.status_code)
    ws.close()
    return 101


async def test_same_origin_is_accepted_and_cross_site_refused() -> None:
    async with local_server(engine="energy", workers=1) as server:  # no --allow-origin at all
        port = server.port
        for spelling in ("127.0.0.1", "localhost"):  # websocket-client sends Origin http://SPELLING:PORT
            url = f"ws://{spelling}:{port}/v1/prod/stream"
            assert await asyncio.to_thread(websocket_client_status, url) == 101, spelling
            assert await handshake_status(url, Origin=f"http://{spelling}:{port}") == 101, spelling
            assert await handshake_status(url, Origin=f"HTTPS://{spelling.upper()}:{port}/") == 101, spelling
        # A page on another port or another spelling of the host is another site.
        assert await handshake_status(f"ws://127.0.0.1:{port}/v1/prod/stream",
                                      Origin=f"http://localhost:{port}") == 403
        assert await handshake_status(server.url, Origin=f"http://127.0.0.1:{port + 1}") == 403
        assert await handshake_status(server.url, Origin="http://localhost:8888") == 403
        # A name an attacker can point at 127.0.0.1 (DNS rebinding) is not trusted as same-origin.
        rebound = f"evil.example:{port}"
        assert await asyncio.to_thread(raw_handshake_status, port, rebound, f"http://{rebound}") == 403
        assert await asyncio.to_thread(raw_handshake_status, port, f"127.0.0.1:{port}",
                                       f"http://127.0.0.1:{port}") == 101


def test_a_malformed_allowed_origin_is_a_usage_error() -> None:
    with pytest.raises(bk.UsageError, match="not an origin"):
        local_server(engine="energy", allow_origins=("localhost:8888",))


# ------------------------------------------------------------------ several tokens
async def test_a_server_with_several_tokens_accepts_each_of_them(monkeypatch) -> None:
    tokens = ("first-token-1", "second-token-2", "third-token-3")
    async with local_server(engine="energy", workers=1, tokens=tokens) as server:
        for token in tokens:
            t = await bk.Client(server.url, token=token).transcribe(tone_pcm16(), 16000, speed=None)
            assert t.text == "sound 0.30 s", token
        with pytest.raises(bk.AuthError):
            await bk.Client(server.url, token="fourth-token-4").transcribe(tone_pcm16(), 16000)
    monkeypatch.setenv("BK_SERVER_TOKENS", "env-a, env-b env-c")
    from bk_notebook.server import ServerConfig

    assert ServerConfig.tokens_from_env() == ("env-a", "env-b", "env-c")


# ------------------------------------------------------------------ credentials in logs
SECRETS = {
    "server token": "srvTOKEN-one/+1",  # known to the server ($BK_SERVER_TOKENS): sent percent-encoded
    "second server token": "srvTOKEN-two",
    "wrong token": "wrongTOKEN-xyz",  # unknown to the server: only the patterns can hide it
    "basic": base64.b64encode(b"me@example.org:pw-BASIC-secret").decode(),
    "bearer": "eyJhbGciOiJIUzI1NiJ9.BEARER.secret",
    "cookie": "COOKIE-secret-value",
    "subprotocol": "PROTOCOL-secret-value",
}


def _cli() -> list[str]:
    exe = shutil.which("bk-notebook")
    return [exe] if exe else [sys.executable, "-m", "bk_notebook.cli"]


def _raw_handshake(port: int, path: str, *headers: str) -> bytes:
    """A handshake written by hand (header values websockets' own client would refuse to send)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13", *headers, "", ""]
        sock.sendall("\r\n".join(lines).encode())
        return sock.recv(4096)


def test_a_verbose_server_log_that_saw_every_credential_holds_none() -> None:
    import os
    import urllib.parse

    env = {**os.environ, "BK_SERVER_TOKENS": f"{SECRETS['server token']},{SECRETS['second server token']}"}
    proc = subprocess.Popen([*_cli(), "-v", "serve", "--port", "0", "--engine", "energy",
                             "--allow-origin", "http://localhost:8888"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        line, seen = "", ""
        while not re.search(r"listening on ws://\S+/v1/prod/stream", line):
            line = proc.stderr.readline()
            seen += line
            assert line, "server exited before listening"
        url = re.search(r"ws://\S+/v1/prod/stream", line).group(0)
        port = int(url.split(":")[2].split("/")[0])
        quoted = urllib.parse.quote(SECRETS["server token"], safe="")

        async def clients() -> None:
            from websockets.asyncio.client import connect

            # The token in the query, its name percent-encoded: accepted (as the server decodes it).
            async with connect(f"{url}?%74oken={quoted}", origin="http://localhost:8888",
                               additional_headers={"Authorization": f"Basic {SECRETS['basic']}",
                                                   "Cookie": f"session={SECRETS['cookie']}"},
                               subprotocols=[SECRETS["subprotocol"]]) as ws:
                await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
                await ws.recv()
            t = await bk.Client(url, token=SECRETS["second server token"]).transcribe(tone_pcm16(), 16000,
                                                                                       speed=None)
            assert t.text == "sound 0.30 s"
            refused = [(f"?tok%65n={SECRETS['wrong token']}", {"Authorization": f"Bearer {SECRETS['bearer']}"}),
                       (f"?token={quoted}", {"Origin": "https://evil.example", "Cookie": f"s={SECRETS['cookie']}"})]
            for query, headers in refused:
                assert await handshake_status(url + query, **headers) in (401, 403)

        asyncio.run(clients())
        # Header values websockets refuses: its debug traceback must not quote them either.
        answer = _raw_handshake(port, f"/v1/prod/stream?token={quoted}",
                                f"Sec-WebSocket-Protocol: @@{SECRETS['subprotocol']}@@",
                                f"Authorization: Bearer {SECRETS['bearer']}")
        assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        log = seen + proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    # The log saw all of it (so the check below is not vacuous) ...
    assert "< GET /v1/prod/stream?%74oken=***" in log and "< GET /v1/prod/stream?tok%65n=***" in log
    assert "< Authorization: ***" in log and "< Cookie: ***" in log and "< Sec-WebSocket-Protocol: ***" in log
    assert "Traceback" in log  # websockets' debug traceback of the refused header, redacted
    # ... and no credential in any form, anywhere.
    for name, secret in SECRETS.items():
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
            assert form not in log, name
    assert "pw-BASIC-secret" not in log


def test_redact_masks_every_kind_of_credential() -> None:
    from bk_notebook.redact import redact

    cases = {
        "GET /v1/prod/stream?%74oken=abc123 HTTP/1.1": "abc123",
        "GET /v1/prod/stream?x=1&TOKEN=abc123": "abc123",
        "/v1/prod/stream?%2574oken=abc123": "abc123",
        "/v1?access_token=abc123#f": "abc123",
        "> Authorization: Basic bWU6cHc=": "bWU6cHc=",
        "< authorization: Bearer abc.def.ghi": "abc.def.ghi",
        "< Cookie: a=1; s=abc123": "abc123",
        "< Sec-WebSocket-Protocol: abc123": "abc123",
        "Headers([('Cookie', 's=abc123')])": "abc123",
    }
    for text, secret in cases.items():
        assert secret not in redact(text), text
    assert redact("x my-secret y", ["my-secret"]) == "x *** y"
    plain = "session 0af3: 1.5 s of audio, 2 finals, stopped; Basic authentication is off"
    assert redact(plain) == plain


def test_serve_with_token_warns_that_ps_shows_it() -> None:
    proc = subprocess.Popen([*_cli(), "serve", "--port", "0", "--engine", "energy", "--token", "visible-TOKEN"],
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "visible to other local users" in first and "BK_SERVER_TOKENS" in first
    assert "visible-TOKEN" not in first
    help_text = subprocess.run([*_cli(), "serve", "--help"], capture_output=True, text=True).stdout
    assert "BK_SERVER_TOKENS" in help_text and "ps" in help_text


# ------------------------------------------------------------------ what the log says
GATED_ENGINE = """
import threading
from bk_notebook.protocol import Final
GATE = threading.Event()
class Gated:
    def reset(self): pass
    def feed(self, pcm): return []
    def flush(self):
        GATE.wait(30)
        return [Final("late", None, None)]
"""


async def test_a_client_that_closes_after_audiostop_is_logged_as_such(tmp_path, monkeypatch, caplog) -> None:
    """The service's own sample sends audioStop and closes without waiting for the reply."""
    from websockets.asyncio.client import connect

    (tmp_path / "gated_engine.py").write_text(GATED_ENGINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import gated_engine

    caplog.set_level(logging.INFO, logger="bk_notebook.server")

    def session_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("session ")]

    async with local_server(engine="gated_engine:Gated", workers=2) as server:
        async with connect(server.url) as ws:
            await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
            sid = json.loads(await ws.recv())["bk"]["data"]["sess_id"]
            await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioStop", "sess_id": sid}}))
        gated_engine.GATE.set()  # the flush ends after the client left
        async with connect(server.url) as ws:  # and one that leaves without audioStop
            await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn"}}))
            assert json.loads(await ws.recv())["bk"]["status"] == 200
        deadline = asyncio.get_running_loop().time() + 30
        while len(session_lines()) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)  # waiting for the server thread to log both sessions' ends
    lines = session_lines()
    assert sum("client sent audioStop and closed before the reply" in line for line in lines) == 1, lines
    assert sum("connection closed before audioStop" in line for line in lines) == 1, lines
