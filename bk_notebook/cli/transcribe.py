"""``bk-notebook transcribe``: files (or folders) to text, where the result goes, resuming a run, progress."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BkError, CheckpointError
from ..outputs import check_writable_file, check_writable_folder
from ..transcript import EXPORT_FORMATS, export_transcripts
from .common import (
    TOKEN_HELP,
    add_token_options,
    add_whisper_options,
    on_chosen_server,
    positive_float,
    refuse_token_on_command_line,
    remote_client,
    speed,
    usage,
    write_result,
)

if TYPE_CHECKING:
    from ..client.client import Client


def add_command(commands: Any) -> None:
    """``transcribe``: files (or folders) to text, where the result goes, resuming a run."""
    transcribe = commands.add_parser("transcribe", help="transcribe audio files", epilog=TOKEN_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    transcribe.add_argument("files", nargs="+", type=Path, metavar="FILE")
    transcribe.add_argument("--url", help="stream endpoint (default $BK_STT_URL or the hosted service)")
    add_token_options(transcribe)
    transcribe.add_argument("--speed", type=speed, default=10.0, help="multiple of real time, or 'max' (default 10)")
    transcribe.add_argument("--format", choices=EXPORT_FORMATS, default="table", help="output format (default table)")
    where = transcribe.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, metavar="FILE", help="write the result to FILE in --format instead of "
                       "stdout (several inputs: one file whose rows name their input; not for srt or vtt)")
    where.add_argument("--out-dir", type=Path, metavar="DIR", help="write one file per input into DIR (made if "
                       "missing), named after it (x.wav -> DIR/x.srt); needed for several files in srt or vtt")
    transcribe.add_argument("--drain-timeout", type=positive_float, default=10.0, metavar="SECONDS",
                            help="wait this long for the server's end-of-stream reply (default 10)")
    transcribe.add_argument("--local", action="store_true", help="start the embedded local server and use it")
    transcribe.add_argument("--engine", default="auto", help="engine for --local (default auto)")
    add_whisper_options(transcribe)
    transcribe.add_argument("--concurrency", type=int, default=4, help="files streamed at once (default 4)")
    transcribe.add_argument("--recursive", action="store_true", help="a FILE that is a folder: its audio files, "
                            "in subfolders too")
    transcribe.add_argument("--checkpoint", type=Path, metavar="FILE", help="append each finished file's finals "
                            "to this JSON Lines file as it finishes, so an interrupted run can --resume")
    transcribe.add_argument("--resume", action="store_true", help="with --checkpoint: skip the files already in it")
    transcribe.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                            help="show audio seconds sent of the total on stderr (default: when stderr is a "
                            "terminal); -v also prints each final as it lands")


def run_command(args: argparse.Namespace) -> int:
    outputs = _check_transcribe_args(args)
    client = remote_client(args)
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
        raise usage("--concurrency must be at least 1")
    refuse_token_on_command_line(args)
    if args.recursive or args.checkpoint or args.resume:
        args.files = _batch_files(args)
    folders = [str(f) for f in args.files if f.is_dir()]
    if folders:
        raise usage(f"is a folder, not an audio file: {', '.join(folders)} "
                    f"(give the files, e.g. {folders[0]}/*.wav, or pass --recursive)")
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise usage(f"no such file: {', '.join(missing)}")
    outputs = _output_paths(args)
    if args.checkpoint is not None:
        check_writable_file(args.checkpoint, "--checkpoint")
    return outputs


def _run_batch(args: argparse.Namespace, client: Client | None, progress: _AudioProgress | None) -> list[Any]:
    """Every file's result in order: a Transcript, an exception, or None when the run stopped before it."""
    from ..batch.run import transcribe_many

    async def run_all(client: Client) -> list[Any]:
        callbacks = progress.callbacks() if progress is not None else {}
        return await transcribe_many(
            args.files, args.concurrency, progress=False, return_exceptions=True, client=client, speed=args.speed,
            checkpoint=args.checkpoint, **callbacks,
        )

    results: list[Any] = []
    try:
        results = asyncio.run(on_chosen_server(args, client, args.concurrency, run_all))
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
            written &= write_result(outputs[name], export_transcripts([(name, transcript)], args.format))
    elif done and args.out is not None:
        written = write_result(args.out, export_transcripts(done, args.format))
    elif done:  # a run where every file failed prints nothing: `> out.csv` is not left with a header alone
        sys.stdout.write(export_transcripts(done, args.format))
    return written


def _batch_files(args: argparse.Namespace) -> list[Path]:
    """``--recursive``: folders become their audio files; ``--checkpoint``/``--resume``: checked before any traffic."""
    from ..batch.inputs import AUDIO_SUFFIXES

    if args.resume and not args.checkpoint:
        raise usage("--resume needs --checkpoint FILE (the checkpoint to resume; --out names the result file)")
    checkpoint = args.checkpoint
    if checkpoint and not args.resume and checkpoint.is_file() and checkpoint.stat().st_size:
        raise usage(f"the checkpoint {checkpoint} exists: pass --resume to continue it, or remove it")
    files: list[Path] = []
    for path in args.files:
        if path.is_dir() and not args.recursive:
            raise usage(f"{path} is a folder: pass --recursive")
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES))
        else:
            files.append(path)
    if not files:
        raise usage(f"no audio files in {', '.join(map(str, args.files))}")
    return files


def _output_paths(args: argparse.Namespace) -> dict[str, Path] | None:
    """Where each input's result goes with --out-dir (None: one stream); refuses what cannot be written, now."""
    several = len(args.files) > 1 and EXPORT_FORMATS[args.format].one_transcript
    if args.out_dir is None:
        if several:
            where = f"--out {args.out}" if args.out is not None else "stdout"
            raise usage(f"several files in --format {args.format} cannot share {where}: pass --out-dir DIR "
                        f"(one .{args.format} per input)")
        if args.out is not None:
            check_writable_file(args.out, "--out")
        return None
    paths: dict[str, Path] = {}
    for f in args.files:
        paths[str(f)] = args.out_dir / (f.stem + EXPORT_FORMATS[args.format].extension)
    clashes = sorted({p.name for p in paths.values() if list(paths.values()).count(p) > 1})
    if clashes:
        raise usage(f"several inputs would write {', '.join(clashes)} in --out-dir; rename or run them apart")
    check_writable_folder(args.out_dir, "--out-dir")  # made now, nested or not: a refusal costs no audio
    return paths


# --------------------------------------------------------------------- progress
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
        from ..batch.run import current_item

        if self.bar is not None:
            self.sent[current_item() or 0] = seconds
            self.bar.n = round(sum(self.sent.values()), 1)
            self.bar.refresh()

    def final(self, record: dict[str, Any]) -> None:
        if not self.verbose:
            return
        from ..batch.run import current_item

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
    from ..audio.convert import open_audio

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
