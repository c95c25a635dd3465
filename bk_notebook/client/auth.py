"""Tokens from the hosted Auth API (``POST /v1/prod/getToken`` with HTTP Basic auth)."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from ..errors import AuthError, ConnectError, ProtocolError

__all__ = ["TOKEN_URL", "get_token"]

TOKEN_URL = "https://api.bahasakita.co.id/v1/prod/getToken"
logger = logging.getLogger("bk_notebook.client.auth")


def get_token(email: str, password: str, *, url: str = TOKEN_URL, timeout: float = 15.0) -> str:
    """Exchange an account's e-mail and password for a streaming token.

    Neither the password nor the token appears in any error or log record.

    Raises
    ------
    AuthError
        The credentials were refused.
    ConnectError
        The Auth API could not be reached.
    ProtocolError
        The reply did not hold a token.
    """
    import urllib.error  # here, not at the top: urllib.request costs ~50 ms at `import bk_notebook`
    import urllib.request

    basic = base64.b64encode(f"{email}:{password}".encode()).decode("ascii")
    request = urllib.request.Request(url, method="POST", data=b"", headers={"Authorization": f"Basic {basic}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (400, 401, 403):
            raise AuthError(f"the Auth API refused the credentials for {email!r} (HTTP {exc.code})") from None
        raise ConnectError(f"the Auth API answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectError(f"cannot reach the Auth API at {url}: {reason}") from None
    token = _token_from(body)
    logger.info("got a token for %s", email)
    return token


def _token_from(body: bytes) -> str:
    try:
        reply: Any = json.loads(body)
        bk = reply["bk"]
    except (ValueError, TypeError, KeyError):
        raise ProtocolError("the Auth API's reply is not the documented JSON") from None
    data = bk.get("data") if isinstance(bk, dict) else None
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        # The documented reply spells the key "messsage"; accept both spellings.
        message = (bk.get("message") or bk.get("messsage") or "no message") if isinstance(bk, dict) else ""
        raise AuthError(f"the Auth API gave no token: {message}")
    return token
