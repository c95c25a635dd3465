"""``bk-notebook demo``: the bundled speech sample through the embedded server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from .common import add_whisper_options, engine_options, render, speed


def add_command(commands: Any) -> None:
    """``demo``: the bundled sample through the embedded server."""
    demo = commands.add_parser("demo", help="stream the bundled speech sample to the embedded server")
    demo.add_argument("--engine", default="auto", help="engine (default auto: whisper when installed)")
    add_whisper_options(demo)
    demo.add_argument("--speed", type=speed, default=2.0, help="multiple of real time (default 2)")


def run_command(args: argparse.Namespace) -> int:
    from ..audio.convert import sample_path
    from ..client.client import Client
    from ..server import local_server

    sample = sample_path()
    live = sys.stderr.isatty()

    def show_partial(text: str) -> None:
        if live:
            print(f"\r\033[K… {text}", end="", file=sys.stderr, flush=True)
        else:
            print(f"partial: {text}", file=sys.stderr, flush=True)

    def show_final(record: dict[str, Any]) -> None:
        prefix = "\r\033[K" if live else ""
        span = f"{record['start']:.2f}-{record['end']:.2f} s"
        print(f"{prefix}final [{span}]: {record['text']}", file=sys.stderr, flush=True)

    async def run() -> Any:
        with local_server(engine=args.engine, workers=1, **engine_options(args)) as server:
            print(f"local server on {server.url} (engine {server.engine}); streaming {sample.name}", file=sys.stderr)
            client = Client(server.url)
            return await client.transcribe(sample, speed=args.speed, on_partial=show_partial, on_final=show_final)

    transcript = asyncio.run(run())
    sys.stdout.write(render("table", [("sample.wav", transcript)]))
    return 0
