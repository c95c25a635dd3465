"""What the commands share: argument types and options, tokens, the server to use, errors, output files."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..client.connect import require_token
from ..errors import BkError
from ..outputs import write_text_atomically
from ..redact import RedactingFilter

if TYPE_CHECKING:
    from ..client.client import Client

REDACT = RedactingFilter()  # on the stderr handler; each command adds the secrets it learns
_T = TypeVar("_T")

TOKEN_HELP = """\
token: read from $BK_TOKEN by default; --token-env NAME reads it from another
variable, --token-prompt asks for it without echo.  A token is never taken on
the command line, where other local users see it (ps) and the shell history
keeps it.  Get one with: export BK_TOKEN=$(bk-notebook token --email EMAIL)
"""


# --------------------------------------------------------------------- options
def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def speed(text: str) -> float | None:
    from ..client.speed import parse_speed

    try:
        return parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_token_options(parser: argparse.ArgumentParser) -> None:
    """Ways to give a token that keep it out of ``ps`` and shell history (``--token`` is refused)."""
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--token-env", metavar="NAME", help="read the token from environment variable NAME "
                       "(default: $BK_TOKEN)")
    given.add_argument("--token-prompt", action="store_true", help="ask for the token at the terminal, no echo")
    given.add_argument("--token", dest="token_on_command_line", help=argparse.SUPPRESS)


def add_whisper_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--language", help="whisper: auto (Indonesian or English, the default), id, en or any "
                         "Whisper language code")
    command.add_argument("--model", help="whisper: base (default), tiny.en or a CTranslate2 model folder")


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """--language and --model, when given, for the engine (the other engines take neither)."""
    return {key: value for key in ("language", "model") if (value := getattr(args, key, None)) is not None}


# --------------------------------------------------------------------- tokens and the server
def refuse_token_on_command_line(args: argparse.Namespace) -> None:
    if args.token_on_command_line is not None:
        raise usage("a token on the command line is visible to other local users (ps) and kept in shell "
                    "history; use $BK_TOKEN, --token-env NAME or --token-prompt")


def remote_client(args: argparse.Namespace) -> Any:
    """The Client for ``--url`` or the hosted service (None with ``--local``), checked before any traffic."""
    if args.local:
        return None
    from ..client.client import Client

    client = Client(args.url, token=token_from_options(args), drain_timeout=args.drain_timeout)
    require_token(client.settings)  # the hosted service with no token: say how to get one, now
    return client


def token_from_options(args: argparse.Namespace) -> str | None:
    if args.token_env:
        token = os.environ.get(args.token_env, "")
        if not token:
            raise usage(f"--token-env {args.token_env}: the environment variable ${args.token_env} is not set")
    elif args.token_prompt:
        token = ask("token: ", secret=True).strip()
        if not token:
            raise usage("no token given at the prompt")
    else:
        return None  # the Client reads $BK_TOKEN
    REDACT.secrets.append(token)
    return token


async def on_chosen_server(
    args: argparse.Namespace, client: Client | None, workers: int, use: Callable[[Client], Awaitable[_T]],
) -> _T:
    """``use`` the remote ``client``, or (``--local``, no client) a client of an embedded server started for it."""
    if client is not None:
        return await use(client)
    from ..client.client import Client
    from ..server import local_server

    with local_server(engine=args.engine, workers=workers, **engine_options(args)) as server:
        return await use(Client(server.url, drain_timeout=args.drain_timeout))


def ask(prompt: str, *, secret: bool = False) -> str:
    """One line from the user; the prompt never goes to stdout (it may be captured by `$(...)`)."""
    if secret and sys.stdin.isatty():
        try:
            return getpass.getpass(prompt)  # prompts and reads on the terminal, without echo
        except EOFError:
            print(file=sys.stderr)
            raise usage(f"no {prompt.rstrip(': ')} given (end of input at the prompt)") from None
    print(prompt, end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not line:
        print(file=sys.stderr)  # the error goes on its own line, not after the prompt
        raise usage(f"no {prompt.rstrip(': ')} given (end of input at the prompt)")
    return line.rstrip("\r\n")


# --------------------------------------------------------------------- errors
def usage(message: str) -> BkError:
    from ..errors import UsageError

    return UsageError(message)


def failure(message: str) -> BkError:
    return BkError(message)


# --------------------------------------------------------------------- results
def write_result(path: Path, text: str, *, echo: bool = True) -> bool:
    """Write one output file whole (a temporary file, then renamed); False when it failed.

    On failure the result goes to stdout (``echo``, unless it is already there): nothing transcribed is lost.
    """
    try:
        write_text_atomically(path, text)
    except OSError as exc:
        print(f"bk-notebook: error: cannot write {path}: {exc.strerror or exc}"
              + ("; the result follows on stdout" if echo else "; the result is on stdout"), file=sys.stderr)
        if echo:
            sys.stdout.write(text)
        return False
    print(f"wrote {path}", file=sys.stderr)
    return True
