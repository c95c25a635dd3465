"""``bk-notebook demo``: the bundled speech sample through the embedded server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ..transcript import export_transcripts
from .common import add_whisper_options, engine_options, speed
from .listen import LiveLine


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
    screen = LiveLine(live=sys.stderr.isatty(), metered=False)  # the partials and finals as listen shows them

    async def run() -> Any:
        with local_server(engine=args.engine, workers=1, **engine_options(args)) as server:
            print(f"local server on {server.url} (engine {server.engine}); streaming {sample.name}", file=sys.stderr)
            client = Client(server.url)
            return await client.transcribe(sample, speed=args.speed, on_partial=screen.show_partial,
                                           on_final=screen.show_final)

    transcript = asyncio.run(run())
    screen.clear()
    sys.stdout.write(export_transcripts([("sample.wav", transcript)], "table"))
    return 0
