"""Log redaction: no token reaches a log record, whoever writes it."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["RedactingLogger", "redact"]

# websockets' DEBUG lines show request paths, which carry ?token=...
_TOKEN_IN_URL = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every ``token=...`` query value and every given secret by ``***``."""
    text = _TOKEN_IN_URL.sub(r"\1***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger to hand to websockets: formats each record, then redacts it."""

    def __init__(self, base: logging.Logger, secrets: Iterable[str] = ()) -> None:
        super().__init__(base, {})
        self._secrets = [s for s in secrets if s]

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args}"
        kwargs.pop("extra", None)
        self.logger.log(level, redact(text, self._secrets), **kwargs)
