"""``bk-notebook``: serve, transcribe, listen, demo and token from the command line.

Exit codes: 0 success, 2 usage error, 1 any other failure; each failure is one
line on stderr.  Results go to stdout, progress and partials to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from . import __version__
from .client.connect import require_token
from .errors import BkError, CheckpointError
from .outputs import check_writable_file, check_writable_folder, write_text_atomically
from .redact import RedactingFilter
from .transcript import EXPORT_FORMATS

if TYPE_CHECKING:
    from .audio.devices import InputDevice
    from .audio.soundcard import LiveChunks, SoundCard
    from .client.client import Client
    from .client.stream import Stream
    from .transcript import Transcript

FORMATS = EXPORT_FORMATS
LISTEN_FORMATS = FORMATS  # one list: listen writes every format transcribe does
ONE_TRANSCRIPT_FORMATS = ("srt", "vtt")  # a subtitle file holds one recording's timeline
_REDACT = RedactingFilter()  # on the stderr handler; each command adds the secrets it learns
_T = TypeVar("_T")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _speed(text: str) -> float | None:
    from .client.speed import parse_speed

    try:
        return parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


TOKEN_HELP = """\
token: read from $BK_TOKEN by default; --token-env NAME reads it from another
variable, --token-prompt asks for it without echo.  A token is never taken on
the command line, where other local users see it (ps) and the shell history
keeps it.  Get one with: export BK_TOKEN=$(bk-notebook token --email EMAIL)
"""
EXTENSIONS = {"table": ".txt", "csv": ".csv", "jsonl": ".jsonl", "srt": ".srt", "vtt": ".vtt"}


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bk-notebook", description="bahasakita streaming speech-to-text, in notebooks and here.")
    parser.add_argument("--version", action="version", version=f"bk-notebook {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details (credentials masked)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_serve_command(commands)
    _add_transcribe_command(commands)
    _add_demo_command(commands)
    _add_listen_command(commands)
    _add_token_command(commands)
    return parser


def _add_serve_command(commands: Any) -> None:
    """``serve``: the local server, its engine and its limits."""
    serve = commands.add_parser("serve", help="run the local bahasakita-compatible server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    serve.add_argument("--engine", default="auto", help="auto (whisper when installed, else pocketsphinx), whisper, "
                       "pocketsphinx, energy or module:Class")
    _add_whisper_options(serve)
    serve.add_argument("--workers", type=int, default=4, help="concurrent sessions (default 4)")
    serve.add_argument("--token", action="append", default=[], help="accepted token (repeatable). Prefer "
                       "$BK_SERVER_TOKENS (comma or space separated): a --token shows in ps to other local users. "
                       "No token: any token is accepted")
    serve.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                       help="let web pages of ORIGIN (e.g. http://localhost:8888) connect from a browser "
                       "(repeatable); handshakes with any other Origin header get HTTP 403")
    serve.add_argument("--idle-timeout", type=_positive_float, default=60.0, help="close idle sessions after N s")
    mode = serve.add_mutually_exclusive_group()
    mode.add_argument("--processes", dest="processes", action="store_true", default=None,
                      help="run engines in worker processes, decoding on every core (the default for pocketsphinx "
                           "on a machine with more than one core)")
    mode.add_argument("--threads", dest="processes", action="store_false",
                      help="run engines in threads of this process (less memory; they share one core's worth of GIL)")
    serve.add_argument("--max-utterance-seconds", type=_positive_float, default=20.0, metavar="S",
                       help="force an utterance to end after S s of continuous sound (default 20)")
    serve.add_argument("--max-queued-seconds", type=_positive_float, default=300.0, metavar="S",
                       help="audio a session may have waiting for its engine before chunks are refused (default 300)")
    serve.add_argument("--decode-slots", type=int, metavar="N", help="engine calls at once, taken in turns by the "
                       "sessions (default: one per core)")
    serve.add_argument("--admission", action=argparse.BooleanOptionalAction, default=True,
                       help="refuse a new session when one more real-time session would make the live ones fall "
                       "behind, as measured (default on; --no-admission: only --workers limits sessions)")
    serve.add_argument("--certfile", help="TLS certificate (PEM): serve wss://")
    serve.add_argument("--keyfile", help="the certificate's private key (PEM)")


def _add_transcribe_command(commands: Any) -> None:
    """``transcribe``: files (or folders) to text, where the result goes, resuming a run."""
    transcribe = commands.add_parser("transcribe", help="transcribe audio files", epilog=TOKEN_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    transcribe.add_argument("files", nargs="+", type=Path, metavar="FILE")
    transcribe.add_argument("--url", help="stream endpoint (default $BK_STT_URL or the hosted service)")
    _add_token_options(transcribe)
    transcribe.add_argument("--speed", type=_speed, default=10.0, help="multiple of real time, or 'max' (default 10)")
    transcribe.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    where = transcribe.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, metavar="FILE", help="write the result to FILE in --format instead of "
                       "stdout (several inputs: one file whose rows name their input; not for srt or vtt)")
    where.add_argument("--out-dir", type=Path, metavar="DIR", help="write one file per input into DIR (made if "
                       "missing), named after it (x.wav -> DIR/x.srt); needed for several files in srt or vtt")
    transcribe.add_argument("--drain-timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                            help="wait this long for the server's end-of-stream reply (default 10)")
    transcribe.add_argument("--local", action="store_true", help="start the embedded local server and use it")
    transcribe.add_argument("--engine", default="auto", help="engine for --local (default auto)")
    _add_whisper_options(transcribe)
    transcribe.add_argument("--concurrency", type=int, default=4, help="files streamed at once (default 4)")
    transcribe.add_argument("--recursive", action="store_true", help="a FILE that is a folder: its audio files, "
                            "in subfolders too")
    transcribe.add_argument("--checkpoint", type=Path, metavar="FILE", help="append each finished file's finals "
                            "to this JSON Lines file as it finishes, so an interrupted run can --resume")
    transcribe.add_argument("--resume", action="store_true", help="with --checkpoint: skip the files already in it")
    transcribe.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                            help="show audio seconds sent of the total on stderr (default: when stderr is a "
                            "terminal); -v also prints each final as it lands")


def _add_demo_command(commands: Any) -> None:
    """``demo``: the bundled sample through the embedded server."""
    demo = commands.add_parser("demo", help="stream the bundled speech sample to the embedded server")
    demo.add_argument("--engine", default="auto", help="engine (default auto: whisper when installed)")
    _add_whisper_options(demo)
    demo.add_argument("--speed", type=_speed, default=2.0, help="multiple of real time (default 2)")


def _add_listen_command(commands: Any) -> None:
    """``listen``: the sound card, live."""
    listen = commands.add_parser("listen", help="transcribe the sound card live (Ctrl-C stops)", epilog=TOKEN_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    listen.add_argument("--url", help="stream endpoint (default $BK_STT_URL or the hosted service)")
    _add_token_options(listen)
    listen.add_argument("--drain-timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                        help="after Ctrl-C, wait this long for the server's last finals (default 10)")
    listen.add_argument("--local", action="store_true", help="start the embedded local server and use it")
    listen.add_argument("--engine", default="auto", help="engine for --local (default auto)")
    _add_whisper_options(listen)
    listen.add_argument("--device", metavar="N|NAME", help="input device: index, name or a unique part of it "
                        "(default: the system's default input)")
    listen.add_argument("--list-devices", action="store_true", help="list the input devices and exit")
    listen.add_argument("--format", choices=LISTEN_FORMATS, default="table", help="output format (default table)")
    listen.add_argument("--out", type=Path, metavar="FILE", help="also write the finals to FILE, in --format")
    listen.add_argument("--duration", type=_positive_float, metavar="S",
                        help="stop after S seconds of audio (default: at Ctrl-C)")


def _add_token_command(commands: Any) -> None:
    """``token``: a token from the hosted Auth API."""
    token = commands.add_parser("token", help="get a token from the hosted Auth API")
    token.add_argument("--email", help="account e-mail (asked if missing)")
    token.add_argument("--auth-url", default=None, help=argparse.SUPPRESS)  # tests point it at a stand-in

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
        from .server.app import ServerConfig

        secrets += [*ServerConfig.tokens_from_env(), *args.token]
    _REDACT.secrets.extend(secret for secret in secrets if secret)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_REDACT)
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


# --------------------------------------------------------------------- commands
def _add_token_options(parser: argparse.ArgumentParser) -> None:
    """Ways to give a token that keep it out of ``ps`` and shell history (``--token`` is refused)."""
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--token-env", metavar="NAME", help="read the token from environment variable NAME "
                       "(default: $BK_TOKEN)")
    given.add_argument("--token-prompt", action="store_true", help="ask for the token at the terminal, no echo")
    given.add_argument("--token", dest="token_on_command_line", help=argparse.SUPPRESS)


def _add_whisper_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--language", help="whisper: auto (Indonesian or English, the default), id, en or any "
                         "Whisper language code")
    command.add_argument("--model", help="whisper: base (default), tiny.en or a CTranslate2 model folder")


def _engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """--language and --model, when given, for the engine (the other engines take neither)."""
    return {key: value for key in ("language", "model") if (value := getattr(args, key, None)) is not None}


def _processes_by_default(args: argparse.Namespace) -> bool:
    """Engines in processes unless told otherwise, when they can decode on more than one core.

    Measured (BENCHMARKS.md §4): real-time PocketSphinx sessions within 1 s p95 go from about 4 with
    threads to 6-8 with processes on 2 cores, for 140 MB instead of 96 MB per engine.  Only for
    pocketsphinx: the energy engine costs too little to be worth a process.
    """
    if args.processes is not None:
        return bool(args.processes)
    from .server.engines import resolve_engine

    return resolve_engine(args.engine, args.model) == "pocketsphinx" and (os.cpu_count() or 1) > 1


def _serve(args: argparse.Namespace) -> int:
    from .server import BkServer, ServerConfig
    from .server.app import check_origin

    # Usage first: a mistake is one line, before the engine is chosen (and logged) or built.
    if args.workers < 1:
        raise _usage("--workers must be at least 1")
    if args.decode_slots is not None and args.decode_slots < 1:
        raise _usage("--decode-slots must be at least 1")
    for origin in args.allow_origin:
        check_origin(origin)
    config = ServerConfig(
        host=args.host, port=args.port, engine=args.engine, workers=args.workers,
        tokens=tuple(args.token) or ServerConfig.tokens_from_env(), idle_timeout=args.idle_timeout,
        certfile=args.certfile, keyfile=args.keyfile, processes=_processes_by_default(args),
        allow_origins=tuple(args.allow_origin), max_utterance_seconds=args.max_utterance_seconds,
        max_queued_seconds=args.max_queued_seconds, decode_slots=args.decode_slots, admission=args.admission,
        engine_options=_engine_options(args),
    )
    if args.token:
        print("bk-notebook: warning: a token given with --token is visible to other local users (ps, /proc); "
              "set BK_SERVER_TOKENS instead (comma or space separated)", file=sys.stderr)

    async def run() -> None:
        server = BkServer(config)
        await server.start()
        print(f"listening on {server.url}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        logging.getLogger("bk_notebook.server").info("shutting down: finishing running sessions")
        await server.close(grace=5.0)

    try:
        asyncio.run(run())
    except OSError as exc:
        raise _failure(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0


def _transcribe(args: argparse.Namespace) -> int:
    outputs = _check_transcribe_args(args)
    client = _remote_client(args)
    progress = _AudioProgress.for_files(args.files, args) if _show_progress(args) or args.verbose else None
    results = _run_batch(args, client, progress)
    done, incomplete = _report_results(args.files, results)
    written = _write_transcripts(args, outputs, done)
    return 0 if len(done) == len(results) and not incomplete and written else 1


def _check_transcribe_args(args: argparse.Namespace) -> dict[str, Path] | None:
    """Every check before any network traffic, so that a mistake costs nothing; the ``--out-dir`` paths.

    With ``--recursive``, ``--checkpoint`` or ``--resume``, ``args.files`` becomes the audio files to run.
    """
    if args.concurrency < 1:
        raise _usage("--concurrency must be at least 1")
    _refuse_token_on_command_line(args)
    if args.recursive or args.checkpoint or args.resume:
        args.files = _batch_files(args)
    folders = [str(f) for f in args.files if f.is_dir()]
    if folders:
        raise _usage(f"is a folder, not an audio file: {', '.join(folders)} "
                     f"(give the files, e.g. {folders[0]}/*.wav, or pass --recursive)")
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise _usage(f"no such file: {', '.join(missing)}")
    outputs = _output_paths(args)
    if args.checkpoint is not None:
        check_writable_file(args.checkpoint, "--checkpoint")
    return outputs


def _run_batch(args: argparse.Namespace, client: Client | None, progress: _AudioProgress | None) -> list[Any]:
    """Every file's result in order: a Transcript, an exception, or None when the run stopped before it."""
    from .batch.run import transcribe_many

    async def run_all(client: Client) -> list[Any]:
        callbacks = progress.callbacks() if progress is not None else {}
        return await transcribe_many(
            args.files, args.concurrency, progress=False, return_exceptions=True, client=client, speed=args.speed,
            checkpoint=args.checkpoint, **callbacks,
        )

    results: list[Any] = []
    try:
        results = asyncio.run(_on_chosen_server(args, client, args.concurrency, run_all))
    except CheckpointError as exc:  # the finished files are still printed or written below
        print(f"bk-notebook: error: {exc}", file=sys.stderr)
        results = exc.results
    finally:
        if progress is not None:
            progress.close(results)
    return results


def _report_results(files: list[Path], results: list[Any]) -> tuple[list[tuple[str, Any]], int]:
    """Say on stderr which files failed or are incomplete; the ``(name, transcript)`` of those that finished."""
    done: list[tuple[str, Any]] = []
    incomplete = 0
    for path, result in zip(files, results, strict=True):
        if result is None:
            print(f"bk-notebook: error: {path}: not transcribed (the run stopped first)", file=sys.stderr)
            continue
        if isinstance(result, Exception):
            print(f"bk-notebook: error: {path}: {result}", file=sys.stderr)
            continue
        done.append((str(path), result))
        if not result.complete:
            incomplete += 1
            print(f"bk-notebook: warning: {path}: {result.incomplete_reason} ({len(result.finals)} finals kept)",
                  file=sys.stderr)
    return done, incomplete


def _write_transcripts(args: argparse.Namespace, outputs: dict[str, Path] | None,
                       done: list[tuple[str, Any]]) -> bool:
    """To ``--out-dir`` (one file each), ``--out`` or stdout; False when a file could not be written."""
    written = True
    if done and outputs is not None:
        for name, transcript in done:
            written &= _write_result(outputs[name], _render(args.format, [(name, transcript)]))
    elif done and args.out is not None:
        written = _write_result(args.out, _render(args.format, done))
    elif done:  # a run where every file failed prints nothing: `> out.csv` is not left with a header alone
        sys.stdout.write(_render(args.format, done))
    return written


def _refuse_token_on_command_line(args: argparse.Namespace) -> None:
    if args.token_on_command_line is not None:
        raise _usage("a token on the command line is visible to other local users (ps) and kept in shell "
                     "history; use $BK_TOKEN, --token-env NAME or --token-prompt")


def _output_paths(args: argparse.Namespace) -> dict[str, Path] | None:
    """Where each input's result goes with --out-dir (None: one stream); refuses what cannot be written, now."""
    several = len(args.files) > 1 and args.format in ONE_TRANSCRIPT_FORMATS
    if args.out_dir is None:
        if several:
            where = f"--out {args.out}" if args.out is not None else "stdout"
            raise _usage(f"several files in --format {args.format} cannot share {where}: pass --out-dir DIR "
                         f"(one .{args.format} per input)")
        if args.out is not None:
            check_writable_file(args.out, "--out")
        return None
    paths: dict[str, Path] = {}
    for f in args.files:
        paths[str(f)] = args.out_dir / (f.stem + EXTENSIONS[args.format])
    clashes = sorted({p.name for p in paths.values() if list(paths.values()).count(p) > 1})
    if clashes:
        raise _usage(f"several inputs would write {', '.join(clashes)} in --out-dir; rename or run them apart")
    check_writable_folder(args.out_dir, "--out-dir")  # made now, nested or not: a refusal costs no audio
    return paths


def _write_result(path: Path, text: str, *, echo: bool = True) -> bool:
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


def _show_progress(args: argparse.Namespace) -> bool:
    return bool(args.progress) if args.progress is not None else sys.stderr.isatty()


class _AudioProgress:
    """One bar of audio seconds sent across every file, and each final as it lands (with -v)."""

    def __init__(self, files: list[Path], total: float | None, *, bar: bool, verbose: bool) -> None:
        from tqdm import tqdm

        self.files = files
        self.verbose = verbose
        self.sent: dict[int, float] = {}  # item position -> seconds sent
        self.bar = None if not bar else tqdm(
            total=round(total, 1) if total else None, unit="s", desc="audio sent", file=sys.stderr,
            dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s "
            "[{elapsed}<{remaining}]" if total else None)

    @classmethod
    def for_files(cls, files: list[Path], args: argparse.Namespace) -> _AudioProgress:
        bar = _show_progress(args)
        return cls(files, _total_seconds(files) if bar else None, bar=bar, verbose=bool(args.verbose))

    def callbacks(self) -> dict[str, Any]:
        return {"on_progress": self.progress, "on_final": self.final}

    def progress(self, seconds: float) -> None:
        from .batch.run import current_item

        if self.bar is not None:
            self.sent[current_item() or 0] = seconds
            self.bar.n = round(sum(self.sent.values()), 1)
            self.bar.refresh()

    def final(self, record: dict[str, Any]) -> None:
        if not self.verbose:
            return
        from .batch.run import current_item

        name = self.files[current_item() or 0].name
        line = f"final {name} [{record['start']:.2f}-{record['end']:.2f} s]: {record['text']}"
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)  # above the bar, which redraws below it
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self, results: list[Any]) -> None:
        """Show where each file ended (progress comes each whole second, so the last fraction is not in it)."""
        if self.bar is None:
            return
        for position, result in enumerate(results):
            if hasattr(result, "duration"):
                self.sent[position] = result.duration
        self.bar.n = round(sum(self.sent.values()), 1)
        self.bar.close()


def _total_seconds(files: list[Path]) -> float | None:
    """The audio the bar counts up to; None (a bar without a total) when a file's length is unknown."""
    from .audio.convert import open_audio

    total = 0.0
    for f in files:
        try:
            duration = open_audio(f).duration
        except BkError:
            return None  # that file's error is reported when its turn comes
        if not duration:
            return None
        total += duration
    return total


def _remote_client(args: argparse.Namespace) -> Any:
    """The Client for ``--url`` or the hosted service (None with ``--local``), checked before any traffic."""
    if args.local:
        return None
    from .client.client import Client

    client = Client(args.url, token=_token_for_transcribe(args), drain_timeout=args.drain_timeout)
    require_token(client.settings)  # the hosted service with no token: say how to get one, now
    return client


def _token_for_transcribe(args: argparse.Namespace) -> str | None:
    if args.token_env:
        token = os.environ.get(args.token_env, "")
        if not token:
            raise _usage(f"--token-env {args.token_env}: the environment variable ${args.token_env} is not set")
    elif args.token_prompt:
        token = _ask("token: ", secret=True).strip()
        if not token:
            raise _usage("no token given at the prompt")
    else:
        return None  # the Client reads $BK_TOKEN
    _REDACT.secrets.append(token)
    return token


def _batch_files(args: argparse.Namespace) -> list[Path]:
    """``--recursive``: folders become their audio files; ``--checkpoint``/``--resume``: checked before any traffic."""
    from .batch.inputs import AUDIO_SUFFIXES

    if args.resume and not args.checkpoint:
        raise _usage("--resume needs --checkpoint FILE (the checkpoint to resume; --out names the result file)")
    checkpoint = args.checkpoint
    if checkpoint and not args.resume and checkpoint.is_file() and checkpoint.stat().st_size:
        raise _usage(f"the checkpoint {checkpoint} exists: pass --resume to continue it, or remove it")
    files: list[Path] = []
    for path in args.files:
        if path.is_dir() and not args.recursive:
            raise _usage(f"{path} is a folder: pass --recursive")
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES))
        else:
            files.append(path)
    if not files:
        raise _usage(f"no audio files in {', '.join(map(str, args.files))}")
    return files


def _render(fmt: str, results: list[tuple[str, Any]]) -> str:
    from .transcript import render

    return render(results, fmt)  # one set of exporters: the Transcript's


def _demo(args: argparse.Namespace) -> int:
    from .audio.convert import sample_path
    from .client.client import Client
    from .server import local_server

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
        with local_server(engine=args.engine, workers=1, **_engine_options(args)) as server:
            print(f"local server on {server.url} (engine {server.engine}); streaming {sample.name}", file=sys.stderr)
            client = Client(server.url)
            return await client.transcribe(sample, speed=args.speed, on_partial=show_partial, on_final=show_final)

    transcript = asyncio.run(run())
    sys.stdout.write(_render("table", [("sample.wav", transcript)]))
    return 0


def _listen(args: argparse.Namespace) -> int:
    """Live transcription of the sound card: partial and level meter on one line, finals below."""
    from .audio.soundcard import SoundCard

    if args.list_devices:
        return _list_devices(SoundCard.devices())
    if args.url and args.local:
        raise _usage("give --url or --local, not both")
    _refuse_token_on_command_line(args)
    if args.out is not None:
        check_writable_file(args.out, "--out")
    client = _remote_client(args)  # a bad URL or token option is reported before the device opens
    card = SoundCard(args.device)  # no such device: one line, before any network traffic
    screen = _LiveLine(live=sys.stderr.isatty())
    listener = _Listener(card, screen, args.duration)
    try:
        transcript = asyncio.run(_on_chosen_server(args, client, 1, listener.session))
    except BkError as exc:  # keep what was transcribed before the failure
        if exc.transcript is not None and exc.transcript.finals:
            _output_listened(args, card, screen, exc.transcript)
        raise
    written = _output_listened(args, card, screen, transcript)
    return _listen_exit_code(card, transcript, written)


def _list_devices(devices: list[InputDevice]) -> int:
    """``listen --list-devices``: a table on stdout, the default marked ``*``; 1 when there are none."""
    rows = [("", "index", "name", "host", "channels", "rate")] + [
        ("*" if d.is_default else "", str(d.index), d.name, d.hostapi, str(d.channels), f"{d.default_samplerate:g}")
        for d in devices
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if not devices:
        print("bk-notebook: no input devices: is a microphone connected and the sound server running?",
              file=sys.stderr)
    return 0 if devices else 1


async def _on_chosen_server(
    args: argparse.Namespace, client: Client | None, workers: int, use: Callable[[Client], Awaitable[_T]],
) -> _T:
    """``use`` the remote ``client``, or (``--local``, no client) a client of an embedded server started for it."""
    if client is not None:
        return await use(client)
    from .client.client import Client
    from .server import local_server

    with local_server(engine=args.engine, workers=workers, **_engine_options(args)) as server:
        return await use(Client(server.url, drain_timeout=args.drain_timeout))


@dataclass
class _LiveLine:
    """What ``listen`` shows on stderr as it goes.

    On a terminal (``live``) the level meter and the partial share one line, redrawn in place, and
    each final is printed above it; elsewhere (a log, a pipe) each partial is a line of its own.
    """

    live: bool
    partial: str = ""
    level: float = -100.0  # dBFS of the last chunk sent

    def meter(self) -> str:
        cells = max(0, min(10, round((self.level + 60.0) / 6.0)))  # -60..0 dBFS in ten cells
        return f"[{'#' * cells}{'.' * (10 - cells)}] {self.level:4.0f} dB"

    def draw(self) -> None:
        import shutil

        width = shutil.get_terminal_size().columns - 1
        print(f"\r\033[K{self.meter()} {self.partial}"[: width + 4], end="", file=sys.stderr, flush=True)

    def show_partial(self, text: str) -> None:
        self.partial = text
        if self.live:
            self.draw()
        else:
            print(f"partial: {self.meter()} {text}", file=sys.stderr, flush=True)

    def show_final(self, record: dict[str, Any]) -> None:
        self.partial = ""
        prefix = "\r\033[K" if self.live else ""
        print(f"{prefix}final [{record['start']:.2f}-{record['end']:.2f} s]: {record['text']}", file=sys.stderr)
        if self.live:
            self.draw()

    def show_level(self, chunk: bytes) -> None:
        from .audio.live import level_dbfs

        self.level = level_dbfs(chunk)
        if self.live:
            self.draw()

    def clear(self) -> None:
        """Leave the terminal's line empty for what follows."""
        if self.live:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


@dataclass
class _Listener:
    """One session of the sound card: its chunks go to the server until Ctrl-C, ``duration`` or the device ends."""

    card: SoundCard
    screen: _LiveLine
    duration: float | None

    async def session(self, client: Client) -> Transcript:
        feed = self.card.chunks()  # opens the device: busy, or a rate it refuses, fails here, before connecting
        try:
            with _ctrl_c_stops(self.card):
                print(f"listening to {self.card.device.name} ({self.card.native_rate:g} Hz, {self.card.channels} "
                      f"ch) for {client.url}; "
                      + (f"stopping after {self.duration:g} s" if self.duration else "Ctrl-C stops"),
                      file=sys.stderr, flush=True)
                async with client.stream(on_partial=self.screen.show_partial,
                                         on_final=self.screen.show_final) as stream:
                    failure = await self._send(feed, stream)
                    transcript = await stream.stop()
                    if failure is not None:
                        failure.transcript = transcript
                        raise failure
                    return transcript
        finally:
            feed.close()

    async def _send(self, feed: LiveChunks, stream: Stream) -> BkError | None:
        """Send every chunk until the feed ends; a device that fails is returned, to be raised after the drain."""
        from .errors import DeviceError

        try:
            async for chunk in feed:
                await stream.send(chunk)
                self.screen.show_level(chunk)
                if self.duration and stream.seconds_sent >= self.duration:
                    self.card.stop()  # the chunks already captured still arrive, then the feed ends
        except DeviceError as exc:  # the device went away: finish the utterance it heard, then say so
            return exc
        return None


@contextlib.contextmanager
def _ctrl_c_stops(card: SoundCard) -> Iterator[None]:
    """Within it, Ctrl-C stops the card: the session ends as at ``--duration``, with its last finals."""
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C aborts at once
        card.stop()

    loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _output_listened(args: argparse.Namespace, card: SoundCard, screen: _LiveLine, transcript: Transcript) -> bool:
    """The finals on stdout in ``--format``, and in ``--out``; False when ``--out`` could not be written."""
    screen.clear()
    text = _render(args.format, [(card.device.name, transcript)])
    sys.stdout.write(text)
    return args.out is None or _write_result(args.out, text, echo=False)


def _listen_exit_code(card: SoundCard, transcript: Transcript, written: bool) -> int:
    """Say what was lost on stderr; 0 only for a complete transcript, written everywhere asked."""
    if card.dropped_seconds:
        print(f"bk-notebook: warning: {card.dropped_seconds:.1f} s of audio were dropped (the consumer fell "
              "behind)", file=sys.stderr)
    if not transcript.complete:
        print(f"bk-notebook: error: {transcript.incomplete_reason}", file=sys.stderr)
        return 1
    return 0 if written else 1


def _token(args: argparse.Namespace) -> int:
    from .client.auth import TOKEN_URL, get_token

    email = args.email or _ask("e-mail: ").strip()
    if not email:
        raise _usage("no e-mail given")
    password = _ask("password: ", secret=True)
    token = get_token(email, password, url=args.auth_url or TOKEN_URL)
    if sys.stdout.isatty():  # keep the secret off the screen and out of terminal logs
        print("got a token; to use it: export BK_TOKEN=$(bk-notebook token --email EMAIL)", file=sys.stderr)
    else:
        print(token)
    return 0


def _ask(prompt: str, *, secret: bool = False) -> str:
    """One line from the user; the prompt never goes to stdout (it may be captured by `$(...)`)."""
    if secret and sys.stdin.isatty():
        try:
            return getpass.getpass(prompt)  # prompts and reads on the terminal, without echo
        except EOFError:
            print(file=sys.stderr)
            raise _usage(f"no {prompt.rstrip(': ')} given (end of input at the prompt)") from None
    print(prompt, end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not line:
        print(file=sys.stderr)  # the error goes on its own line, not after the prompt
        raise _usage(f"no {prompt.rstrip(': ')} given (end of input at the prompt)")
    return line.rstrip("\r\n")


def _usage(message: str) -> BkError:
    from .errors import UsageError

    return UsageError(message)


def _failure(message: str) -> BkError:
    return BkError(message)


_COMMANDS = {"serve": _serve, "transcribe": _transcribe, "demo": _demo, "token": _token, "listen": _listen}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
