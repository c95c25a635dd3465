"""``bk-notebook``: serve, transcribe, listen, demo and token from the command line.

Exit codes: 0 success, 2 usage error, 1 any other failure; each failure is one
line on stderr.  Results go to stdout, progress and partials to stderr.

One module per command (``serve``, ``transcribe``, ``demo``, ``listen``, ``token``: each
adds its parser and runs it), what they share in ``common``; here the parser is assembled
and ``main`` runs the command it names.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..errors import BkError
from . import demo, listen, serve, token, transcribe
from .common import REDACT, TOKEN_HELP

__all__ = ["TOKEN_HELP", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bk-notebook", description="bahasakita streaming speech-to-text, in notebooks and here.")
    parser.add_argument("--version", action="version", version=f"bk-notebook {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details (credentials masked)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve.add_command(commands)
    transcribe.add_command(commands)
    demo.add_command(commands)
    listen.add_command(commands)
    token.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # Every line on stderr goes through one filter: no logger (ours, websockets', an engine's) prints a credential.
    secrets = [os.environ.get("BK_TOKEN", "")]
    if args.command == "serve":
        from ..server.app import ServerConfig

        secrets += [*ServerConfig.tokens_from_env(), *args.token]
    REDACT.secrets.extend(secret for secret in secrets if secret)
    for handler in logging.getLogger().handlers:
        handler.addFilter(REDACT)
    if not args.verbose:
        logging.getLogger("websockets").setLevel(logging.WARNING)
        if args.command != "serve":  # the embedded server's session lines are noise there
            logging.getLogger("bk_notebook.server").setLevel(logging.WARNING)
    try:
        return int(_COMMANDS[args.command](args))
    except BkError as exc:
        print(f"bk-notebook: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    except KeyboardInterrupt:
        print("bk-notebook: interrupted", file=sys.stderr)
        return 1


_COMMANDS = {"serve": serve.run_command, "transcribe": transcribe.run_command, "demo": demo.run_command,
             "token": token.run_command, "listen": listen.run_command}
