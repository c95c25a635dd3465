"""get_token against a local stand-in for the hosted Auth API."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import logging
import threading
from collections.abc import Iterator

import pytest

import bk_notebook as bk

PASSWORD = "hunter2-very-secret"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.payload.signature"


@contextlib.contextmanager
def auth_api(body: dict | None = None, status: int = 200) -> Iterator[tuple[str, list]]:
    seen: list = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append((self.path, self.headers.get("Authorization")))
            payload = json.dumps(body or {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/prod/getToken", seen
    finally:
        server.shutdown()


@pytest.mark.parametrize("key", ["message", "messsage"])  # the documented reply misspells it
def test_get_token_sends_basic_auth_and_reads_the_token(key: str) -> None:
    with auth_api({"bk": {key: "success", "data": {"token": TOKEN}}}) as (url, seen):
        assert bk.get_token("me@example.org", PASSWORD, url=url) == TOKEN
    expected = "Basic " + base64.b64encode(f"me@example.org:{PASSWORD}".encode()).decode()
    assert seen == [("/v1/prod/getToken", expected)]


def test_refused_credentials_never_show_the_password(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with auth_api({"bk": {"message": "wrong password"}}, status=401) as (url, _):
        with pytest.raises(bk.AuthError, match="refused") as info:
            bk.get_token("me@example.org", PASSWORD, url=url)
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
    assert PASSWORD not in caplog.text
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_reply_without_token() -> None:
    with auth_api({"bk": {"messsage": "account not verified", "data": {}}}) as (url, _):
        with pytest.raises(bk.AuthError, match="account not verified"):
            bk.get_token("me@example.org", PASSWORD, url=url)


def test_success_logs_no_token(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with auth_api({"bk": {"message": "success", "data": {"token": TOKEN}}}) as (url, _):
        bk.get_token("me@example.org", PASSWORD, url=url)
    assert TOKEN not in caplog.text and PASSWORD not in caplog.text


def test_unreachable_api() -> None:
    with pytest.raises(bk.ConnectError, match="cannot reach"):
        bk.get_token("me@example.org", PASSWORD, url="http://127.0.0.1:9/v1/prod/getToken", timeout=2)
