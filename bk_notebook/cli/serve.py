"""``bk-notebook serve``: the local server, its engine and its limits."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from .common import add_whisper_options, check_engine_choice, engine_options, failure, positive_float, usage


def add_command(commands: Any) -> None:
    """``serve``: the local server, its engine and its limits."""
    serve = commands.add_parser("serve", help="run the local bahasakita-compatible server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    from ..server.engines.table import ENGINES

    serve.add_argument("--engine", default="auto", help=f"auto (whisper when installed, else pocketsphinx), "
                       f"{', '.join(ENGINES)} or module:Class")
    add_whisper_options(serve)
    serve.add_argument("--prompt", dest="server_prompt", help="whisper: text in the vocabulary to expect, for "
                       "every session (a session's own prompt replaces it)")
    serve.add_argument("--workers", type=int, default=4, help="concurrent sessions (default 4)")
    serve.add_argument("--token", action="append", default=[], help="accepted token (repeatable). Prefer "
                       "$BK_SERVER_TOKENS (comma or space separated): a --token shows in ps to other local users. "
                       "No token: any token is accepted")
    serve.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                       help="let web pages of ORIGIN (e.g. http://localhost:8888) connect from a browser "
                       "(repeatable); handshakes with any other Origin header get HTTP 403")
    serve.add_argument("--idle-timeout", type=positive_float, default=60.0, help="close idle sessions after N s")
    mode = serve.add_mutually_exclusive_group()
    mode.add_argument("--processes", dest="processes", action="store_true", default=None,
                      help="run engines in worker processes, decoding on every core (the default for pocketsphinx "
                           "on a machine with more than one core)")
    mode.add_argument("--threads", dest="processes", action="store_false",
                      help="run engines in threads of this process (less memory; they share one core's worth of GIL)")
    serve.add_argument("--max-utterance-seconds", type=positive_float, default=20.0, metavar="S",
                       help="force an utterance to end after S s of continuous sound (default 20)")
    serve.add_argument("--max-queued-seconds", type=positive_float, default=300.0, metavar="S",
                       help="audio a session may have waiting for its engine before chunks are refused (default 300)")
    serve.add_argument("--decode-slots", type=int, metavar="N", help="engine calls at once, taken in turns by the "
                       "sessions (default: one per core)")
    serve.add_argument("--admission", action=argparse.BooleanOptionalAction, default=True,
                       help="refuse a new session when one more real-time session would make the live ones fall "
                       "behind, as measured (default on; --no-admission: only --workers limits sessions)")
    serve.add_argument("--certfile", help="TLS certificate (PEM): serve wss://")
    serve.add_argument("--keyfile", help="the certificate's private key (PEM)")


def _processes_by_default(args: argparse.Namespace) -> bool:
    """Engines in processes unless told otherwise, when they can decode on more than one core.

    Measured (BENCHMARKS.md §4): real-time PocketSphinx sessions within 1 s p95 go from about 4 with
    threads to 6-8 with processes on 2 cores, for 140 MB instead of 96 MB per engine.  Only for the
    engines whose table row says so (pocketsphinx): the energy engine costs too little to be worth a
    process, and Whisper's sessions share one model that decodes outside the GIL.
    """
    if args.processes is not None:
        return bool(args.processes)
    from ..server.engines import ENGINES, resolve_engine

    spec = ENGINES.get(resolve_engine(args.engine, args.model))
    return spec is not None and spec.processes and (os.cpu_count() or 1) > 1


def run_command(args: argparse.Namespace) -> int:
    from ..server import BkServer, ServerConfig
    from ..server.app import check_origin

    # Usage first: a mistake is one line, before the engine is chosen (and logged) or built.
    if args.workers < 1:
        raise usage("--workers must be at least 1")
    if args.decode_slots is not None and args.decode_slots < 1:
        raise usage("--decode-slots must be at least 1")
    for origin in args.allow_origin:
        check_origin(origin)
    check_engine_choice(args)
    config = ServerConfig(
        host=args.host, port=args.port, engine=args.engine, workers=args.workers,
        tokens=tuple(args.token) or ServerConfig.tokens_from_env(), idle_timeout=args.idle_timeout,
        certfile=args.certfile, keyfile=args.keyfile, processes=_processes_by_default(args),
        allow_origins=tuple(args.allow_origin), max_utterance_seconds=args.max_utterance_seconds,
        max_queued_seconds=args.max_queued_seconds, decode_slots=args.decode_slots, admission=args.admission,
        engine_options=engine_options(args),
    )
    if args.token:
        print("bk-notebook: warning: a token given with --token is visible to other local users (ps, /proc); "
              "set BK_SERVER_TOKENS instead (comma or space separated)", file=sys.stderr)

    async def run() -> None:
        server = BkServer(config)  # the engine and its model: their errors are their own, not "cannot listen"
        try:
            await server.start()
        except OSError as exc:
            raise failure(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
        print(f"listening on {server.url}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        logging.getLogger("bk_notebook.server").info("shutting down: finishing running sessions")
        await server.close(grace=5.0)

    asyncio.run(run())
    return 0
