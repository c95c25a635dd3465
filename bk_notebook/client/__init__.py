"""The client, and what a session needs.

Settings (``settings``), one session (``stream``), opening the socket (``connect``),
its bookkeeping (``window``, ``resume``, ``events``, ``safeguards``, ``speed``), the blocking facade
(``blocking``) and the hosted Auth API (``auth``); ``Client`` itself is in ``client``.
"""

from __future__ import annotations

from .client import DEFAULT_URL, Client, Stream, transcribe, transcribe_sync
from .settings import ClientSettings

__all__ = ["DEFAULT_URL", "Client", "ClientSettings", "Stream", "transcribe", "transcribe_sync"]
