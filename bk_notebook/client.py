"""The client: settings, the token, and the one-call ``transcribe``; sessions live in ``stream.py``.

Everything runs on the caller's event loop: top-level ``await`` in a notebook
cell, or ``asyncio.run`` in a script.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Callable
from ssl import SSLContext
from typing import Any

from .audio import open_audio
from .errors import UsageError
from .redact import redact
from .stream import Stream, _positive
from .transcript import Transcript

__all__ = ["DEFAULT_URL", "Client", "Stream", "transcribe"]

DEFAULT_URL = "wss://api.bahasakita.co.id/v1/prod/stream"
logger = logging.getLogger("bk_notebook.client")


class Client:
    """A connection factory for the bahasakita streaming service.

    Parameters
    ----------
    url : str, optional
        ``ws://`` or ``wss://`` URL of the stream endpoint; else ``$BK_STT_URL``,
        else the hosted service.  A ``token=`` in the URL's query is taken as the token.
    token : str, optional
        Access token; else ``$BK_TOKEN``.  Sent as ``?token=...``; never shown.
    connect_timeout : float
        Seconds for the websocket handshake.
    reply_timeout : float
        Seconds to wait for the ``audioConn`` reply, and for a send to be accepted.
    drain_timeout : float
        Seconds to wait for the ``audioStop`` reply before returning what arrived.
    connect_retries : int
        Attempts of ``audioConn`` (and of the handshake on network errors) before
        giving up; waits grow exponentially with jitter from ``retry_backoff`` seconds.
    ssl : ssl.SSLContext, optional
        For ``wss://``: certificates are verified by default; pass a context to
        trust a private CA.
    reconnect : int
        How many times a connection lost mid-stream is replaced by a new session
        that resumes from the end of the last final (0, the default: never; live
        audio then ends with ``ConnectionLost``, keeping every final).
    resume_buffer_seconds : float
        Audio kept for resending after the last final (bounded memory); audio
        beyond it that a resumption would need is reported in ``Transcript.gaps``.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        connect_timeout: float = 10.0,
        reply_timeout: float = 30.0,
        drain_timeout: float = 10.0,
        connect_retries: int = 5,
        retry_backoff: float = 0.5,
        ssl: SSLContext | None = None,
        reconnect: int = 0,
        resume_buffer_seconds: float = 300.0,
    ) -> None:
        raw = url or os.environ.get("BK_STT_URL") or DEFAULT_URL
        parts = urllib.parse.urlsplit(raw)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise UsageError(f"url must start with ws:// or wss:// and name a host, got {parts.scheme or 'no'} scheme")
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        url_token = next((v for k, v in query if k == "token"), None)
        rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "token"])
        self.url = urllib.parse.urlunsplit(parts._replace(query=rest, fragment=""))
        self._token = token or url_token or os.environ.get("BK_TOKEN") or None
        self.connect_timeout = _positive("connect_timeout", connect_timeout)
        self.reply_timeout = _positive("reply_timeout", reply_timeout)
        self.drain_timeout = _positive("drain_timeout", drain_timeout)
        if isinstance(connect_retries, bool) or not isinstance(connect_retries, int) or connect_retries < 1:
            raise UsageError(f"connect_retries must be a whole number >= 1, got {connect_retries!r}")
        self.connect_retries = connect_retries
        self.retry_backoff = float(retry_backoff)
        if ssl is not None and parts.scheme != "wss":
            raise UsageError("ssl= applies to wss:// URLs only")
        self.ssl = ssl
        if isinstance(reconnect, bool) or not isinstance(reconnect, int) or reconnect < 0:
            raise UsageError(f"reconnect must be a whole number >= 0, got {reconnect!r}")
        self.reconnect = reconnect
        self.resume_buffer_seconds = _positive("resume_buffer_seconds", resume_buffer_seconds)

    @property
    def has_token(self) -> bool:
        """Whether a token will be sent (the token itself is never exposed)."""
        return self._token is not None

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, token={'<set>' if self._token else None})"

    def _secrets(self) -> list[str]:
        return [self._token, urllib.parse.quote(self._token, safe="")] if self._token else []

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets())

    def _connect_url(self) -> str:
        if not self._token:
            return self.url
        sep = "&" if urllib.parse.urlsplit(self.url).query else "?"
        return f"{self.url}{sep}token={urllib.parse.quote(self._token, safe='')}"

    def stream(
        self,
        *,
        speed: float | None = None,
        on_partial: Callable[[str], Any] | None = None,
        on_final: Callable[[dict[str, Any]], Any] | None = None,
        on_progress: Callable[[float], Any] | None = None,
    ) -> Stream:
        """A session as an async context manager: ``audioConn`` on entry.

        ``speed`` paces ``send`` at that multiple of real time (``None``: unpaced,
        the default, as live audio arrives at its own pace).  ``on_progress(seconds)``
        is called with the audio seconds sent, once per second of audio.
        """
        return Stream(self, speed=speed, on_partial=on_partial, on_final=on_final, on_progress=on_progress)

    async def transcribe(
        self,
        audio: Any,
        sr: float | None = None,
        *,
        speed: float | None = 10.0,
        on_partial: Callable[[str], Any] | None = None,
        on_final: Callable[[dict[str, Any]], Any] | None = None,
        on_progress: Callable[[float], Any] | None = None,
        display: bool = False,
    ) -> Transcript:
        """Stream a numpy array (with ``sr``), a path, or encoded bytes; return the Transcript.

        The audio is validated before any connection is made.  ``speed`` is the
        multiple of real time to send at (10x by default, as the service's own
        sample does); ``None`` sends as fast as the connection allows.
        ``display=True`` shows, in the calling cell's output, a progress bar of
        audio seconds sent, the live partial and the finals as they arrive.
        """
        source = open_audio(audio, sr)
        live = None
        if display:
            from .display import LiveDisplay

            live = LiveDisplay(source.duration)
            on_partial, on_final, on_progress = (
                _both(live.partial, on_partial), _both(live.final, on_final), _both(live.progress, on_progress)
            )
        try:
            async with self.stream(
                speed=speed, on_partial=on_partial, on_final=on_final, on_progress=on_progress
            ) as session:
                for block in source:
                    await session.send(block)
                transcript = await session.stop()
        except BaseException as exc:
            if live is not None:
                live.close(error=exc)
            raise
        if live is not None:
            live.close(transcript)
        return transcript


def _both(first: Callable[[Any], Any], second: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """Call ``first`` then ``second`` (if any), awaiting ``second`` when it is a coroutine."""
    if second is None:
        return first

    def both(arg: Any) -> Any:
        first(arg)
        return second(arg)

    return both


async def transcribe(audio: Any, sr: float | None = None, **kwargs: Any) -> Transcript:
    """Transcribe with a default :class:`Client` (``$BK_STT_URL``, ``$BK_TOKEN``).

    Keyword arguments for :meth:`Client.transcribe` pass through; ``client=``
    uses a given client instead.
    """
    client = kwargs.pop("client", None) or Client()
    return await client.transcribe(audio, sr, **kwargs)

