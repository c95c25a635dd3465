"""Log redaction: no credential reaches a log record, whoever writes it.

Credentials travel in three places, and each is masked in any text that goes
to a log: a query parameter whose name says token, key, secret or password (in
any percent-encoding or case: the server decodes ``?%74oken=`` as ``token``),
the value of a credential header (``Authorization``, ``Proxy-Authorization``,
``Cookie``, ``Set-Cookie``, ``Sec-WebSocket-Protocol``: websockets logs every
request header at DEBUG), and any secret the caller names (the tokens a server
accepts, the token a client sends).
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
import urllib.parse
from collections.abc import Iterable
from typing import Any

__all__ = ["RedactingFilter", "RedactingLogger", "redact"]

MASK = "***"

# A query parameter: its name (percent-encoded or not) and its value up to the next separator.
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;?\s\"'#]{1,200})=(?P<value>[^&;\s\"'#]*)")
_SECRET_NAME = re.compile(r"token|secret|passw|api[-_]?key|^key$|^auth|^sig", re.IGNORECASE)
# "Name: value" (websockets' "> Authorization: ..." lines) and "'name', 'value'" pairs (reprs of header lists).
_HEADERS = r"(?:proxy-)?authorization|(?:set-)?cookie|sec-websocket-protocol|x-api-key|x-auth-token"
# websockets' errors say "invalid Sec-WebSocket-Protocol header: expected token at 0 in <value>".
_HEADER_LINE = re.compile(rf"(?P<name>\b(?:{_HEADERS}))(?P<sep>(?: header)?\s*[:=]\s*)(?P<value>[^\r\n]+)",
                          re.IGNORECASE)
_HEADER_PAIR = re.compile(rf"(?P<name>['\"](?:{_HEADERS})['\"])(?P<sep>\s*,\s*)(?P<value>'[^']*'|\"[^\"]*\")",
                          re.IGNORECASE)
# "Basic dXNlcjpwdw==", "Bearer eyJ...": a scheme and a value with a digit or symbol (not an English word).
_SCHEME = re.compile(
    r"\b(?P<name>Basic|Bearer|Digest)(?P<sep>\s+)(?P<value>(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,})"
)


def _param_name(raw: str) -> str:
    name = raw
    for _ in range(3):  # %2574oken is %74oken once decoded: mask every layer a decoder might peel
        decoded = urllib.parse.unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name


def _mask_param(match: re.Match[str]) -> str:
    if _SECRET_NAME.search(_param_name(match["name"])):
        return f"{match['lead']}{match['name']}={MASK}"
    return match[0]


def _mask_value(match: re.Match[str]) -> str:
    return f"{match['name']}{match['sep']}{MASK}"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask credentials in ``text``: token-like query values, credential headers and each given secret.

    Examples
    --------
    >>> redact("GET /v1/prod/stream?%74oken=abc&x=1")
    'GET /v1/prod/stream?%74oken=***&x=1'
    >>> redact("< Cookie: session=abc")
    '< Cookie: ***'
    """
    for secret in secrets:
        if secret:
            for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
                text = text.replace(form, MASK)
    text = _QUERY_PARAM.sub(_mask_param, text)
    text = _HEADER_LINE.sub(_mask_value, text)
    text = _HEADER_PAIR.sub(_mask_value, text)
    return _SCHEME.sub(_mask_value, text)


def _exception_text(exc_info: Any) -> str:
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if not isinstance(exc_info, tuple) or exc_info[0] is None:
        return ""
    return "".join(traceback.format_exception(*exc_info)).rstrip()


class RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger to hand to websockets: formats each record and its traceback, then redacts them."""

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
        kwargs.pop("stack_info", None)
        trace = _exception_text(kwargs.pop("exc_info", None))  # a traceback may quote a header value
        if trace:
            text = f"{text}\n{trace}"
        self.logger.log(level, redact(text, self._secrets), **kwargs)


class RedactingFilter(logging.Filter):
    """A handler filter that redacts every record it passes, tracebacks included.

    The CLI puts it on its stderr handler, so that no logger (websockets', a
    user engine's, the server's) can print a credential there.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]  # may grow: a token read at a prompt joins it

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            text = f"{record.msg} {record.args}"
        trace = _exception_text(record.exc_info) if record.exc_info else (record.exc_text or "")
        if trace:
            text = f"{text}\n{trace}"
        record.msg, record.args = redact(text, self.secrets), None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True
