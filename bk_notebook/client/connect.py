"""Opening the websocket to the service, with its failures mapped onto the error tree."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import random
import re
import urllib.parse
from ssl import SSLError
from typing import TYPE_CHECKING, Any

from ..errors import AuthError, ConnectError, UsageError
from ..redact import RedactingLogger

if TYPE_CHECKING:
    from .settings import ClientSettings

__all__ = ["HOSTED_HOST", "MAX_REPLY_BYTES", "NO_TOKEN_HELP", "backoff", "open_websocket", "require_token"]

HOSTED_HOST = "api.bahasakita.co.id"
NO_TOKEN_HELP = (
    "set $BK_TOKEN (get one with `bk-notebook token --email EMAIL`), pass token=... to the Client, or in the "
    "CLI use --token-env NAME or --token-prompt; or transcribe offline with the local server (--local, "
    "bk.local_server())"
)

MAX_REPLY_BYTES = 2**20
logger = logging.getLogger("bk_notebook.client.client")


def backoff(base: float, attempt: int) -> float:
    """Exponential backoff with jitter: ``base``, 2x, 4x ... (capped at 30 s), each 0.5x to 1.5x."""
    return min(base * 2 ** (attempt - 1), 30.0) * random.uniform(0.5, 1.5)


def _on_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refused(exc: BaseException) -> bool:
    """Every address refused the connection (asyncio joins several into one OSError with their texts)."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    codes = re.findall(r"\[Errno (\d+)\]", str(exc)) if isinstance(exc, OSError) and exc.errno is None else []
    return bool(codes) and all(int(code) == errno.ECONNREFUSED for code in codes)


def require_token(settings: ClientSettings) -> None:
    """Refuse, before any network traffic, to call the hosted service without a token (it would only say 401)."""
    if not settings.has_token and urllib.parse.urlsplit(settings.url).hostname == HOSTED_HOST:
        raise UsageError(f"the hosted service {settings.url} needs a token and none was given: {NO_TOKEN_HELP}")


async def open_websocket(settings: ClientSettings, attempt: int, *, fail_fast_on_loopback: bool = True) -> Any:
    """Open the websocket; None means a network error worth retrying (after a backoff).

    A refused connection on this machine (127.0.0.0/8, ``::1``, ``localhost``)
    means nothing listens there: it is raised at once, not retried, unless
    ``fail_fast_on_loopback`` is False (a local server restarting under a resumed session).
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus, WebSocketException

    require_token(settings)
    tls: dict[str, Any] = {"ssl": settings.ssl} if settings.ssl is not None else {}  # wss:// verifies by default
    try:
        return await connect(
            settings.connect_url(),
            open_timeout=settings.connect_timeout,
            compression=None,  # base64 audio barely compresses; deflate would cost CPU
            max_size=MAX_REPLY_BYTES,  # replies are small JSON: a huge one is a fault, not data
            **tls,
            proxy=None,
            close_timeout=2.0,  # a server stuck in its closing handshake must not hold us 10 s
            logger=RedactingLogger(logging.getLogger("websockets.client"), settings.secrets()),
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403) and not settings.has_token:
            raise AuthError(f"{settings.url} refused the handshake (HTTP {status}): no token was sent; "
                            f"{NO_TOKEN_HELP.split('; or ')[0]}") from None
        if status in (401, 403):
            raise AuthError(f"{settings.url} refused the token (HTTP {status}); check the token or $BK_TOKEN") from None
        error = ConnectError(f"{settings.url} refused the websocket handshake (HTTP {status})")
    except (OSError, asyncio.TimeoutError, WebSocketException) as exc:
        reason = settings.redact(str(exc)) or type(exc).__name__
        if isinstance(exc, SSLError):
            raise ConnectError(
                f"TLS verification failed for {settings.url}: {reason}; pass ssl=<SSLContext> to trust it"
            ) from None
        error = ConnectError(f"cannot connect to {settings.url}: {reason}")
        if fail_fast_on_loopback and _refused(exc) and _on_loopback(settings.url):
            error = ConnectError(f"cannot connect to {settings.url}: connection refused, nothing is listening there "
                                 "(is the server running? `bk-notebook serve` or bk.local_server())")
            attempt = settings.connect_retries  # raised below, outside this block: no foreign exception chained
    if attempt >= settings.connect_retries:
        raise error
    logger.info("%s; retrying (attempt %d of %d)", error, attempt, settings.connect_retries)
    await asyncio.sleep(backoff(settings.retry_backoff, attempt))
    return None
