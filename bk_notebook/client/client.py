"""The client: settings, the token, and the one-call ``transcribe``; a session is a :class:`Stream`.

Everything runs on the caller's event loop: top-level ``await`` in a notebook
cell, or ``asyncio.run`` in a script.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from ssl import SSLContext
from typing import Any, Generic, TypeVar, overload

from ..audio.convert import open_audio
from ..errors import UsageError
from ..transcript import Transcript
from .blocking import Awaitable, run_blocking
from .settings import DEFAULT_URL, ClientSettings
from .stream import Stream

__all__ = ["DEFAULT_URL", "Client", "ClientSettings", "Stream", "transcribe", "transcribe_sync"]

logger = logging.getLogger("bk_notebook.client.client")
T = TypeVar("T")


class _Setting(Generic[T]):
    """A Client attribute that reads, and on assignment replaces, one field of its frozen ``settings``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, client: None, owner: type) -> _Setting[T]: ...
    @overload
    def __get__(self, client: Client, owner: type) -> T: ...
    def __get__(self, client: Client | None, owner: type) -> T | _Setting[T]:
        return self if client is None else getattr(client.settings, self.name)  # type: ignore[no-any-return]

    def __set__(self, client: Client, value: T) -> None:
        client.settings = client.settings.replace(**{self.name: value})


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
        After ``audioStop``, the longest silence from the server tolerated before
        returning what arrived (marked ``complete=False``); not a total: reading
        goes on as long as replies keep coming.
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
    window_seconds : float or None
        Flow control: against a server that answers every ``audioStream`` once
        it has decoded it (the local server does), at most this much audio is
        sent and not yet answered, so the recogniser paces an unpaced client and
        the backlog at ``audioStop`` stays within it.  A server that answers only
        some chunks is noticed and paced by ``speed`` alone.  ``None``: no window.
    history_size : int
        How many recent transcripts :attr:`history` keeps.

    Attributes
    ----------
    history : list of Transcript
        This client's recent transcripts, oldest first, the one in progress
        included: after an interrupt or an error, ``client.history[-1]`` holds
        the finals received (``complete`` is False).

    Notes
    -----
    Memory is bounded per session: unread ``events()`` at 1000 events and 8 MiB
    of their text (older partials dropped first), the resume buffer at ``resume_buffer_seconds``, audio in flight
    at ``window_seconds``; the finals themselves are the result and are all kept.
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
        window_seconds: float | None = 3.0,
        history_size: int = 20,
    ) -> None:
        self.settings = ClientSettings.resolve(
            url, token, connect_timeout=connect_timeout, reply_timeout=reply_timeout, drain_timeout=drain_timeout,
            connect_retries=connect_retries, retry_backoff=retry_backoff, ssl=ssl, reconnect=reconnect,
            resume_buffer_seconds=resume_buffer_seconds, window_seconds=window_seconds,
        )
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise UsageError(f"history_size must be a whole number >= 1, got {history_size!r}")
        self._history: deque[Transcript] = deque(maxlen=history_size)

    # Each option reads, and on assignment replaces, one field of the frozen settings.
    url = _Setting[str]()
    connect_timeout = _Setting[float]()
    reply_timeout = _Setting[float]()
    drain_timeout = _Setting[float]()
    connect_retries = _Setting[int]()
    retry_backoff = _Setting[float]()
    ssl = _Setting["SSLContext | None"]()
    reconnect = _Setting[int]()
    resume_buffer_seconds = _Setting[float]()
    window_seconds = _Setting["float | None"]()

    @property
    def history(self) -> list[Transcript]:
        """Recent transcripts of this client, oldest first (bounded by ``history_size``)."""
        return list(self._history)

    def _remember(self, transcript: Transcript) -> None:
        self._history.append(transcript)

    @property
    def has_token(self) -> bool:
        """Whether a token will be sent (the token itself is never exposed)."""
        return self.settings.has_token

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, token={'<set>' if self.settings.has_token else None})"

    def stream(
        self,
        *,
        speed: float | None = None,
        on_partial: Callable[[str], Any] | None = None,
        on_final: Callable[[dict[str, Any]], Any] | None = None,
        on_progress: Callable[[float], Any] | None = None,
        prompt: str | None = None,
    ) -> Stream:
        """A session as an async context manager: ``audioConn`` on entry.

        ``speed`` paces ``send`` at that multiple of real time (``None``: unpaced,
        the default, as live audio arrives at its own pace).  ``on_progress(seconds)``
        is called with the audio seconds sent, once per second of audio.  ``prompt``
        asks the local Whisper server to expect this vocabulary for this session (see
        :meth:`transcribe`).
        """
        return Stream(self.settings, remember=self._remember, speed=speed, on_partial=on_partial, on_final=on_final,
                      on_progress=on_progress, prompt=prompt)

    def transcribe(self, audio: Any, sr: float | None = None, **kwargs: Any) -> Any:
        """Stream a numpy array (with ``sr``), a path, or encoded bytes; return the Transcript.

        A coroutine: ``t = await client.transcribe(...)``.  The audio is
        validated before any connection is made.  ``speed`` is the multiple of
        real time to send at (10x by default, as the service's own sample does);
        ``None`` sends as fast as the connection (and the send window) allows.
        ``display=True`` shows, in the calling cell's output, a progress bar of
        audio seconds sent, the live partial and the finals as they arrive.
        ``on_partial(text)``, ``on_final(record)`` and ``on_progress(seconds)``
        are called as they happen (coroutine functions are awaited).
        ``prompt`` (text in the vocabulary to expect: names, terms) is sent in
        ``audioConn``'s data for this session only when given; the local Whisper
        server decodes with it as Whisper's initial prompt.  It is the local
        server's extension: how the hosted service treats a field it does not
        know is not documented.
        """
        return Awaitable(self._transcribe(audio, sr, **kwargs), "client.transcribe(...)")

    def transcribe_sync(self, audio: Any, sr: float | None = None, **kwargs: Any) -> Transcript:
        """:meth:`transcribe` for scripts and teaching cells: blocks until the Transcript is ready.

        Runs on a private event loop in a worker thread, so it also works inside
        a running notebook (where ``asyncio.run`` refuses); the cell waits.
        """
        return run_blocking(self._transcribe(audio, sr, **kwargs))

    async def _transcribe(
        self,
        audio: Any,
        sr: float | None = None,
        *,
        speed: float | None = 10.0,
        on_partial: Callable[[str], Any] | None = None,
        on_final: Callable[[dict[str, Any]], Any] | None = None,
        on_progress: Callable[[float], Any] | None = None,
        display: bool = False,
        prompt: str | None = None,
    ) -> Transcript:
        if prompt is not None and not isinstance(prompt, str):
            raise UsageError(f"prompt must be a str, got {type(prompt).__name__}")
        source = open_audio(audio, sr)
        live = None
        if display:
            from ..display import LiveDisplay

            live = LiveDisplay(source.duration)
            on_partial, on_final, on_progress = (
                _both(live.partial, on_partial), _both(live.final, on_final), _both(live.progress, on_progress)
            )
        try:
            async with self.stream(
                speed=speed, on_partial=on_partial, on_final=on_final, on_progress=on_progress, prompt=prompt
            ) as session:
                for block in source:
                    if live is not None:
                        live.keep(block)  # for the player shown when it ends
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


def transcribe(audio: Any, sr: float | None = None, **kwargs: Any) -> Any:
    """Transcribe with a default :class:`Client` (``$BK_STT_URL``, ``$BK_TOKEN``); a coroutine.

    Keyword arguments for :meth:`Client.transcribe` pass through; ``client=``
    uses a given client instead.
    """
    client = kwargs.pop("client", None) or Client()
    return Awaitable(client._transcribe(audio, sr, **kwargs), "bk.transcribe(...)")


def transcribe_sync(audio: Any, sr: float | None = None, **kwargs: Any) -> Transcript:
    """:func:`transcribe` that blocks until the Transcript is ready (scripts, teaching cells)."""
    client = kwargs.pop("client", None) or Client()
    return client.transcribe_sync(audio, sr, **kwargs)

