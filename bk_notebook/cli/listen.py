"""``bk-notebook listen``: the sound card, live; the level meter and partials on one line, finals below."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BkError
from ..outputs import check_writable_file
from ..transcript import EXPORT_FORMATS, export_transcripts
from .common import (
    TOKEN_HELP,
    add_token_options,
    add_whisper_options,
    on_chosen_server,
    positive_float,
    refuse_token_on_command_line,
    remote_client,
    usage,
    write_result,
)

if TYPE_CHECKING:
    from ..audio.devices import InputDevice
    from ..audio.soundcard import LiveChunks, SoundCard
    from ..client.client import Client
    from ..client.stream import Stream
    from ..transcript import Transcript


def add_command(commands: Any) -> None:
    """``listen``: the sound card, live."""
    listen = commands.add_parser("listen", help="transcribe the sound card live (Ctrl-C stops)", epilog=TOKEN_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    listen.add_argument("--url", help="stream endpoint (default $BK_STT_URL or the hosted service)")
    add_token_options(listen)
    listen.add_argument("--drain-timeout", type=positive_float, default=10.0, metavar="SECONDS",
                        help="after Ctrl-C, wait this long for the server's last finals (default 10)")
    listen.add_argument("--local", action="store_true", help="start the embedded local server and use it")
    listen.add_argument("--engine", default="auto", help="engine for --local (default auto)")
    add_whisper_options(listen)
    listen.add_argument("--device", metavar="N|NAME", help="input device: index, name or a unique part of it "
                        "(default: the system's default input)")
    listen.add_argument("--list-devices", action="store_true", help="list the input devices and exit")
    listen.add_argument("--format", choices=EXPORT_FORMATS, default="table", help="output format (default table)")
    listen.add_argument("--out", type=Path, metavar="FILE", help="also write the finals to FILE, in --format")
    listen.add_argument("--duration", type=positive_float, metavar="S",
                        help="stop after S seconds of audio (default: at Ctrl-C)")


def run_command(args: argparse.Namespace) -> int:
    """Live transcription of the sound card: partial and level meter on one line, finals below."""
    from ..audio.soundcard import SoundCard

    if args.list_devices:
        return _list_devices(SoundCard.devices())
    if args.url and args.local:
        raise usage("give --url or --local, not both")
    refuse_token_on_command_line(args)
    if args.out is not None:
        check_writable_file(args.out, "--out")
    client = remote_client(args)  # a bad URL or token option is reported before the device opens
    card = SoundCard(args.device)  # no such device: one line, before any network traffic
    screen = LiveLine(live=sys.stderr.isatty())
    listener = _Listener(card, screen, args.duration)
    try:
        transcript = asyncio.run(on_chosen_server(args, client, 1, listener.session))
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


@dataclass
class LiveLine:
    """What ``listen`` (and ``demo``) show on stderr as a session goes.

    On a terminal (``live``) the level meter and the partial share one line, redrawn in place, and
    each final is printed above it; elsewhere (a log, a pipe) each partial is a line of its own.
    Without a microphone to meter (``metered=False``) an ellipsis stands where the meter would be.
    """

    live: bool
    metered: bool = True
    partial: str = ""
    level: float = -100.0  # dBFS of the last chunk sent

    def meter(self) -> str:
        cells = max(0, min(10, round((self.level + 60.0) / 6.0)))  # -60..0 dBFS in ten cells
        return f"[{'#' * cells}{'.' * (10 - cells)}] {self.level:4.0f} dB"

    def draw(self) -> None:
        import shutil

        width = shutil.get_terminal_size().columns - 1
        status = self.meter() if self.metered else "…"
        print(f"\r\033[K{status} {self.partial}"[: width + 4], end="", file=sys.stderr, flush=True)

    def show_partial(self, text: str) -> None:
        self.partial = text
        if self.live:
            self.draw()
        else:
            print(f"partial: {self.meter() + ' ' if self.metered else ''}{text}", file=sys.stderr, flush=True)

    def show_final(self, record: dict[str, Any]) -> None:
        self.partial = ""
        prefix = "\r\033[K" if self.live else ""
        span = f"{record['start']:.2f}-{record['end']:.2f} s"
        print(f"{prefix}final [{span}]: {record['text']}", file=sys.stderr, flush=True)
        if self.live:
            self.draw()

    def show_level(self, chunk: bytes) -> None:
        from ..audio.live import level_dbfs

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
    screen: LiveLine
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
        from ..errors import DeviceError

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


def _output_listened(args: argparse.Namespace, card: SoundCard, screen: LiveLine, transcript: Transcript) -> bool:
    """The finals on stdout in ``--format``, and in ``--out``; False when ``--out`` could not be written."""
    screen.clear()
    text = export_transcripts([(card.device.name, transcript)], args.format)
    sys.stdout.write(text)
    return args.out is None or write_result(args.out, text, echo=False)


def _listen_exit_code(card: SoundCard, transcript: Transcript, written: bool) -> int:
    """Say what was lost on stderr; 0 only for a complete transcript, written everywhere asked."""
    if card.dropped_seconds:
        print(f"bk-notebook: warning: {card.dropped_seconds:.1f} s of audio were dropped (the consumer fell "
              "behind)", file=sys.stderr)
    if not transcript.complete:
        print(f"bk-notebook: error: {transcript.incomplete_reason}", file=sys.stderr)
        return 1
    return 0 if written else 1
