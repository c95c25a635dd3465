"""``ClientSettings``: where a client connects and how patiently, as one frozen value.

The :class:`~bk_notebook.client.client.Client` holds one; a session (``Stream``), the
handshake and the Dask adapter take it instead of reaching into the client, so
an option is declared once, here, and validated once, in ``__post_init__``.
The token lives only in this object: never in its repr, and only in the URL
that goes on the wire (:meth:`connect_url`), never in one shown to a user.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any

from ..errors import UsageError
from ..redact import redact
from .safeguards import positive_seconds

__all__ = ["DEFAULT_URL", "ClientSettings"]

DEFAULT_URL = "wss://api.bahasakita.co.id/v1/prod/stream"


def _whole(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UsageError(f"{name} must be a whole number >= {least}, got {value!r}")
    return value


@dataclass(frozen=True)
class ClientSettings:
    """Everything a session needs to know about its service (see :class:`~bk_notebook.Client` for each field)."""

    url: str = DEFAULT_URL
    token: str | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    reply_timeout: float = 30.0
    drain_timeout: float = 10.0
    connect_retries: int = 5
    retry_backoff: float = 0.5
    ssl: SSLContext | None = field(default=None, repr=False)
    reconnect: int = 0
    resume_buffer_seconds: float = 300.0
    window_seconds: float | None = 3.0

    # The options a Dask worker's own Client is built with (the URL, token and ssl travel apart).
    WORKER_OPTIONS = ("connect_timeout", "reply_timeout", "drain_timeout", "connect_retries", "retry_backoff",
                      "reconnect", "resume_buffer_seconds", "window_seconds")

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlsplit(self.url).scheme
        if scheme not in ("ws", "wss") or not urllib.parse.urlsplit(self.url).netloc:
            raise UsageError(f"url must start with ws:// or wss:// and name a host, got {scheme or 'no'} scheme")
        fixed = {
            "connect_timeout": positive_seconds("connect_timeout", self.connect_timeout),
            "reply_timeout": positive_seconds("reply_timeout", self.reply_timeout),
            "drain_timeout": positive_seconds("drain_timeout", self.drain_timeout),
            "connect_retries": _whole("connect_retries", self.connect_retries, 1),
            "retry_backoff": float(self.retry_backoff),
            "reconnect": _whole("reconnect", self.reconnect, 0),
            "resume_buffer_seconds": positive_seconds("resume_buffer_seconds", self.resume_buffer_seconds),
            "window_seconds": None if self.window_seconds is None else positive_seconds(
                "window_seconds", self.window_seconds),
            "token": self.token or None,
        }
        for name, value in fixed.items():
            object.__setattr__(self, name, value)
        if self.ssl is not None and scheme != "wss":
            raise UsageError("ssl= applies to wss:// URLs only")

    @classmethod
    def resolve(cls, url: str | None = None, token: str | None = None, **options: Any) -> ClientSettings:
        """Settings from arguments and the environment.

        ``url`` else ``$BK_STT_URL`` else the hosted service; ``token`` else a ``token=`` in the
        URL's query else ``$BK_TOKEN``.
        """
        raw = url or os.environ.get("BK_STT_URL") or DEFAULT_URL
        parts = urllib.parse.urlsplit(raw)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        url_token = next((v for k, v in query if k == "token"), None)
        rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "token"])
        clean = urllib.parse.urlunsplit(parts._replace(query=rest, fragment=""))
        return cls(url=clean, token=token or url_token or os.environ.get("BK_TOKEN") or None, **options)

    def replace(self, **changes: Any) -> ClientSettings:
        """A copy with ``changes`` applied (validated as on construction)."""
        return dataclasses.replace(self, **changes)

    @property
    def has_token(self) -> bool:
        return self.token is not None

    def connect_url(self) -> str:
        """The URL sent on the wire, with the token; never shown, logged or put in an error."""
        if not self.token:
            return self.url
        sep = "&" if urllib.parse.urlsplit(self.url).query else "?"
        return f"{self.url}{sep}token={urllib.parse.quote(self.token, safe='')}"

    def secrets(self) -> list[str]:
        """What must never be shown: the token, raw and as it appears in a URL."""
        return [self.token, urllib.parse.quote(self.token, safe="")] if self.token else []

    def redact(self, text: str) -> str:
        return redact(text, self.secrets())

    def worker_options(self) -> dict[str, Any]:
        """The options a Dask worker's own :class:`~bk_notebook.Client` needs, besides URL and token."""
        return {name: getattr(self, name) for name in self.WORKER_OPTIONS}
