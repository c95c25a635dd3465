"""Opening the websocket: what is retried and what fails at once."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import numpy as np
import pytest

import bk_notebook as bk
from bk_notebook.client.connect import _on_loopback, _refused

from helpers import scripted_server


@pytest.mark.parametrize("url", ["ws://127.0.0.1:9/v1/prod/stream", "ws://localhost:9/v1/prod/stream",
                                 "ws://127.0.0.2:9/v1/prod/stream"])
async def test_a_refused_loopback_port_fails_at_once_with_a_clear_error(url: str, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bk_notebook.client.client")
    client = bk.Client(url, connect_retries=5, retry_backoff=30.0)  # five retries would take minutes
    with pytest.raises(bk.ConnectError, match="connection refused, nothing is listening there") as info:
        await client.transcribe(np.zeros(1600, dtype=np.int16), 16000)
    assert "retrying" not in caplog.text
    assert info.value.__cause__ is None and info.value.__context__ is None


async def test_other_handshake_failures_are_still_retried(caplog) -> None:
    handshakes = []

    def fail(connection: Any, request: Any) -> Any:
        handshakes.append(request.path)
        return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "busy\n")

    async def never(ws: Any) -> None:
        raise AssertionError("no handshake succeeds")

    caplog.set_level(logging.INFO, logger="bk_notebook.client.client")
    async with scripted_server(never, process_request=fail) as url:
        with pytest.raises(bk.ConnectError, match="HTTP 503"):
            await bk.Client(url, connect_retries=3, retry_backoff=0.01).transcribe(np.zeros(1600), 16000)
    assert len(handshakes) == 3 and caplog.text.count("retrying") == 2


def test_loopback_and_refusal_are_recognised() -> None:
    assert all(_on_loopback(f"ws://{h}:1/x") for h in ("127.0.0.1", "127.1.2.3", "[::1]", "localhost", "a.localhost"))
    assert not any(_on_loopback(f"ws://{h}:1/x") for h in ("10.0.0.1", "example.org", "[::2]", "localhost.example"))
    assert _refused(ConnectionRefusedError(111, "refused"))
    assert _refused(OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 9, 0, 0), "
                            "[Errno 111] Connect call failed ('127.0.0.1', 9)"))
    assert not _refused(OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 9, 0, 0), "
                                "[Errno 110] Connect call failed ('127.0.0.1', 9)"))
    assert not _refused(TimeoutError())
