"""``bk-notebook token``: a token from the hosted Auth API, kept off the screen."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import ask, usage


def add_command(commands: Any) -> None:
    """``token``: a token from the hosted Auth API."""
    token = commands.add_parser("token", help="get a token from the hosted Auth API")
    token.add_argument("--email", help="account e-mail (asked if missing)")
    token.add_argument("--auth-url", default=None, help=argparse.SUPPRESS)  # tests point it at a stand-in


def run_command(args: argparse.Namespace) -> int:
    from ..client.auth import TOKEN_URL, get_token

    email = args.email or ask("e-mail: ").strip()
    if not email:
        raise usage("no e-mail given")
    password = ask("password: ", secret=True)
    token = get_token(email, password, url=args.auth_url or TOKEN_URL)
    if sys.stdout.isatty():  # keep the secret off the screen and out of terminal logs
        print("got a token; to use it: export BK_TOKEN=$(bk-notebook token --email EMAIL)", file=sys.stderr)
    else:
        print(token)
    return 0
