"""Opening the websocket to the service, with its failures mapped onto the error tree."""

from __future__ import annotations

import asyncio
import logging
import random
from ssl import SSLError
from typing import TYPE_CHECKING, Any

from .errors import AuthError, ConnectError
from .redact import RedactingLogger

if TYPE_CHECKING:
    from .client import Client

__all__ = ["MAX_REPLY_BYTES", "backoff", "open_websocket"]

MAX_REPLY_BYTES = 2**20
logger = logging.getLogger("bk_notebook.client")


def backoff(base: float, attempt: int) -> float:
    """Exponential backoff with jitter: ``base``, 2x, 4x ... (capped at 30 s), each 0.5x to 1.5x."""
    return min(base * 2 ** (attempt - 1), 30.0) * random.uniform(0.5, 1.5)


async def open_websocket(client: Client, attempt: int) -> Any:
    """Open the websocket; None means a network error worth retrying (after a backoff)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus, WebSocketException
    tls: dict[str, Any] = {"ssl": client.ssl} if client.ssl is not None else {}  # wss:// verifies by default
    try:
        return await connect(
            client._connect_url(),
            open_timeout=client.connect_timeout,
            compression=None,  # base64 audio barely compresses; deflate would cost CPU
            max_size=MAX_REPLY_BYTES,  # replies are small JSON: a huge one is a fault, not data
            **tls,
            proxy=None,
            close_timeout=2.0,  # a server stuck in its closing handshake must not hold us 10 s
            logger=RedactingLogger(logging.getLogger("websockets.client"), client._secrets()),
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise AuthError(f"{client.url} refused the token (HTTP {status}); check the token or $BK_TOKEN") from None
        error = ConnectError(f"{client.url} refused the websocket handshake (HTTP {status})")
    except (OSError, asyncio.TimeoutError, WebSocketException) as exc:
        reason = client._redact(str(exc)) or type(exc).__name__
        if isinstance(exc, SSLError):
            raise ConnectError(
                f"TLS verification failed for {client.url}: {reason}; pass ssl=<SSLContext> to trust it"
            ) from None
        error = ConnectError(f"cannot connect to {client.url}: {reason}")
    if attempt >= client.connect_retries:
        raise error
    logger.info("%s; retrying (attempt %d of %d)", error, attempt, client.connect_retries)
    await asyncio.sleep(backoff(client.retry_backoff, attempt))
    return None
